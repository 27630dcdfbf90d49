"""Kafka headers on each DLQ record, in the style of Kafka Connect's dead-letter queue
(`__connect.errors.*`), so generic tooling can route and filter without parsing the JSON value
(which stays the contract's message)."""

from __future__ import annotations

from nova_jobs.deadletter.message import DlqMessage

PREFIX = "nova.errors."


def dlq_headers(message: DlqMessage) -> list[tuple[str, bytes]]:
    fields = {
        "job": message.job_name,
        "run_id": message.run_id,
        "kind": message.kind,
        "error_class": message.error_class,
        "correlation_id": message.correlation_id,
    }
    return [(PREFIX + name, value.encode("utf-8")) for name, value in fields.items()]
