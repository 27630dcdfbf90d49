"""Creating the DLQ topics with an explicit retention, so the broker's default (often 7 days,
sometimes forever) does not decide how long failures are kept.

Called where Nova first uses the topics (the sensors, the CLI, `nova-jobs dev`); a topic that
already exists is left as it is (its retention is the cluster admin's to change)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nova_jobs.deadletter import settings
from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC
from nova_jobs.lib.redact import redact_text
from nova_jobs.resources.kafka import KafkaResource

if TYPE_CHECKING:
    from kafka.admin import NewTopic

TOPICS = (DLQ_TOPIC, CONTROL_TOPIC)
DAY_MS = 24 * 3600 * 1000
# Brokers ensured by this process: one admin round trip per broker, not per tick.
_ensured: set[str] = set()
# After a failure (broker down, no admin rights) the next attempt waits, so ticks during an
# outage do not each spend the admin client's timeout on top of their own.
RETRY_AFTER_SECONDS = 300.0
_failed_at: dict[str, float] = {}


def new_topics() -> list[NewTopic]:
    # kafka-python is imported when a client opens, not with the code location.
    from kafka.admin import NewTopic

    retention = str(settings.retention_days() * DAY_MS)
    return [NewTopic(name, settings.topic_partitions(), settings.topic_replication(),
                     topic_configs={"retention.ms": retention}) for name in TOPICS]


def ensure_topics(kafka: KafkaResource) -> list[str]:
    """Create the DLQ topics that do not exist yet, with `retention.ms`; the names created."""
    from kafka.errors import TopicAlreadyExistsError

    admin = kafka.admin()
    try:
        existing = set(admin.list_topics())
        created = []
        for topic in new_topics():
            if topic.name in existing:
                continue
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # created meanwhile (another sensor, the producer's auto-create)
        return created
    finally:
        admin.close()


def ensure_topics_once(kafka: KafkaResource) -> str | None:
    """`ensure_topics` the first time this process uses the broker. Returns why it could not
    (no admin rights, broker down): the caller logs it and goes on, as the topics may well exist."""
    if kafka.brokers in _ensured or time.monotonic() - _failed_at.get(kafka.brokers, -RETRY_AFTER_SECONDS) < RETRY_AFTER_SECONDS:
        return None
    try:
        ensure_topics(kafka)
    except Exception as error:  # noqa: BLE001 - creating topics is a convenience, never a reason to stop
        _failed_at[kafka.brokers] = time.monotonic()
        return f"cannot create the DLQ topics: {type(error).__name__}: {redact_text(str(error))[:300]}"
    _ensured.add(kafka.brokers)
    return None
