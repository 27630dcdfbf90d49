"""Resources for every Nova job, configured from the environment at run time.

Every setting is a resource field with its real default, so the UI's resource page shows either
that default or, for a variable that is set, the variable's name (`dg.EnvVar`: the run reads the
value; a password is never shown). A variable unset (or empty) when the code location loads
leaves its field at the default, since `dg.EnvVar` of an unset variable fails every run; the code
location and its runs see the same environment. Nothing is checked or opened here: the resources
check their settings in `setup_for_execution`, so a bad value fails the run at launch naming
the variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.resources.redis import RedisResource

log = logging.getLogger(__name__)

# Optional settings: field -> environment variable.
CLICKHOUSE_VARIABLES = {"database": "CLICKHOUSE_DATABASE", "timeout_ms": "CLICKHOUSE_TIMEOUT_MS"}
KAFKA_VARIABLES = {
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_cafile": "KAFKA_SSL_CAFILE",
}
_INT_FIELDS = frozenset({"timeout_ms"})


def _whole_number(value: str) -> bool:
    try:
        int(value)  # what Dagster's IntSource does with the variable's value
    except ValueError:
        return False
    return True


def fields_from_env(variables: Mapping[str, str]) -> dict[str, Any]:
    """`dg.EnvVar` for each variable set now, by field; unset ones are left out (the default)."""
    fields: dict[str, Any] = {}
    for field, name in variables.items():
        value = os.environ.get(name, "")
        if not value.strip():
            continue
        if field not in _INT_FIELDS:
            fields[field] = dg.EnvVar(name)
        elif _whole_number(value):
            fields[field] = dg.EnvVar.int(name)
        else:
            # Dagster would refuse to create the run at all. Left at its default, the field defers
            # to the variable, so each run fails at launch with the SettingError naming it.
            log.warning("%s=%r is not a whole number; runs will fail until it is fixed", name, value.strip())
    return fields


def kafka_resource_from_env(brokers: str | None = None) -> KafkaResource:
    """The Kafka resource the jobs and sensors get, resolved and checked now the way a run does
    it: for the `dlq` CLI, which runs outside Dagster. `brokers` (`--brokers`) replaces
    `KAFKA_BROKERS`; an empty value is reported by `bootstrap_servers`."""
    resource = KafkaResource(brokers=brokers or os.environ.get("KAFKA_BROKERS", ""), **fields_from_env(KAFKA_VARIABLES))
    # The context-manager form closes the throwaway instance Dagster makes for the init context;
    # the plain form leaves it current in a context variable after it is gone, and the next
    # definitions built in the process (a test's) fail on it. KafkaResource has no teardown.
    with resource.process_config_and_initialize_cm() as initialized:
        return initialized


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    return {
        "clickhouse": ClickHouseResource(url=dg.EnvVar("CLICKHOUSE_URL"), **fields_from_env(CLICKHOUSE_VARIABLES)),
        "redis": RedisResource(url=dg.EnvVar("REDIS_URL")),
        "kafka": KafkaResource(brokers=dg.EnvVar("KAFKA_BROKERS"), **fields_from_env(KAFKA_VARIABLES)),
    }
