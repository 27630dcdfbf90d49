"""Resources for every Nova job, configured from the environment at run time."""

import dagster as dg

from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.resources.redis import RedisResource


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    return {
        "clickhouse": ClickHouseResource(url=dg.EnvVar("CLICKHOUSE_URL")),
        "redis": RedisResource(url=dg.EnvVar("REDIS_URL")),
        "kafka": KafkaResource(brokers=dg.EnvVar("KAFKA_BROKERS")),
    }
