"""The broker behind the dead-letter queue: `KAFKA_BROKERS` (comma separated host:port).

TLS and SASL come from `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`,
`KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CAFILE`, read when a client opens.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from nova_jobs.lib.settings import SettingError, setting_choice

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


class KafkaResource(dg.ConfigurableResource):
    """Producers and consumers on the Nova Kafka cluster."""

    brokers: str = Field(description="Comma-separated host:port list")
    request_timeout_ms: int = Field(default=5000, description="The old worker's message.timeout.ms")

    def _security(self) -> dict[str, Any]:
        protocol = setting_choice(
            "KAFKA_SECURITY_PROTOCOL", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], default="PLAINTEXT"
        )
        options: dict[str, Any] = {"security_protocol": protocol}
        if protocol.startswith("SASL"):
            options["sasl_mechanism"] = setting_choice(
                "KAFKA_SASL_MECHANISM", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], default="PLAIN"
            )
            options["sasl_plain_username"] = os.environ.get("KAFKA_SASL_USERNAME", "")
            options["sasl_plain_password"] = os.environ.get("KAFKA_SASL_PASSWORD", "")
        if protocol.endswith("SSL") and os.environ.get("KAFKA_SSL_CAFILE"):
            options["ssl_cafile"] = os.environ["KAFKA_SSL_CAFILE"]
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
