"""The broker behind the dead-letter queue: `KAFKA_BROKERS` (comma separated host:port).

TLS and SASL are the resource's fields, set from `KAFKA_SECURITY_PROTOCOL`,
`KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CAFILE` by
`nova_jobs.resources` (the same for the jobs, the sensors and the `dlq` CLI).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from nova_jobs.lib.settings import SettingError, setting_choice, setting_str

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient


def parse_brokers(brokers: str) -> list[str]:
    servers = [part.strip() for part in brokers.split(",") if part.strip()]
    if not servers:
        raise SettingError("KAFKA_BROKERS is not set")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingError(f"KAFKA_BROKERS entry {server!r} is not host:port")
    return servers


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _field_or_env(value: str, name: str) -> str:
    """A field left at its default ("") takes its variable if set, unstripped (a password is
    taken as it is): a resource built by hand reads what a run would."""
    return value or os.environ.get(name, "")


class KafkaResource(dg.ConfigurableResource):
    """Producers and consumers on the Nova Kafka cluster."""

    brokers: str = Field(description="Comma-separated host:port list (KAFKA_BROKERS)")
    request_timeout_ms: int = Field(default=5000, description="The old worker's message.timeout.ms")
    security_protocol: str = Field(
        default="PLAINTEXT", description=f"{', '.join(PROTOCOLS)} (KAFKA_SECURITY_PROTOCOL)"
    )
    sasl_mechanism: str = Field(
        default="PLAIN", description=f"{', '.join(MECHANISMS)}, for the SASL protocols (KAFKA_SASL_MECHANISM)"
    )
    sasl_username: str = Field(default="", description="For the SASL protocols (KAFKA_SASL_USERNAME)")
    sasl_password: str = Field(
        default="",
        description="For the SASL protocols (KAFKA_SASL_PASSWORD); give it as dg.EnvVar only, so the UI "
        "shows the variable's name and the redaction knows the value",
    )
    ssl_cafile: str = Field(
        default="", description="CA bundle for the SSL protocols; empty: the system's (KAFKA_SSL_CAFILE)"
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad protocol or mechanism fails the run (or the sensor tick) at launch, naming the
        # variable; nothing is opened here.
        self._security()

    def _security(self) -> dict[str, Any]:
        # A field left at its default takes its variable if set (lib/settings' one rule).
        protocol = setting_choice("KAFKA_SECURITY_PROTOCOL", PROTOCOLS, self.security_protocol.strip(),
                                  default="PLAINTEXT")
        options: dict[str, Any] = {"security_protocol": protocol}
        if protocol.startswith("SASL"):
            options["sasl_mechanism"] = setting_choice("KAFKA_SASL_MECHANISM", MECHANISMS,
                                                       self.sasl_mechanism.strip(), default="PLAIN")
            options["sasl_plain_username"] = _field_or_env(self.sasl_username, "KAFKA_SASL_USERNAME")
            options["sasl_plain_password"] = _field_or_env(self.sasl_password, "KAFKA_SASL_PASSWORD")
        cafile = setting_str("KAFKA_SSL_CAFILE", self.ssl_cafile.strip(), "")
        if protocol.endswith("SSL") and cafile:
            options["ssl_cafile"] = cafile
        return options

    @property
    def bootstrap_servers(self) -> list[str]:
        return parse_brokers(self.brokers)

    def producer(self) -> KafkaProducer:
        # kafka-python is imported when a client opens, not with the code location (~0.2 s).
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            request_timeout_ms=self.request_timeout_ms,
            max_block_ms=self.request_timeout_ms,
            # Fail fast when the broker is down (default 30 s): the DLQ sensor retries next tick.
            bootstrap_timeout_ms=self.request_timeout_ms,
            linger_ms=5,
            batch_size=1_000 * 1024,
            retries=3,
            **self._security(),
        )

    def consumer(self, **options: Any) -> KafkaConsumer:
        from kafka import KafkaConsumer

        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "enable_auto_commit": False,
            "bootstrap_timeout_ms": self.request_timeout_ms,
            **self._security(),
        }
        settings.update(options)
        return KafkaConsumer(**settings)

    def admin(self) -> KafkaAdminClient:
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=self.request_timeout_ms,
                                bootstrap_timeout_ms=self.request_timeout_ms,
                                **self._security())
