"""Publish every run that failed for good to `jobs-dlq`, exactly once, even across Kafka outages.

Not a run-failure sensor: its cursor moves on even when the send fails, and it only wakes on a
new failure. This sensor instead looks at recent failed runs each tick and publishes those
without the `nova/dlq_published` tag, tagging each once the broker has acknowledged it (acks
from all in-sync replicas). A run that Dagster will retry (`dagster/will_retry=true`) is not
dead; its last attempt is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from nova_jobs.deadletter import settings
from nova_jobs.deadletter.kafka_io import publish
from nova_jobs.deadletter.message import DLQ_TOPIC, PUBLISHED_TAG, WILL_RETRY_TAG, build_message
from nova_jobs.lib.timing import iso_z
from nova_jobs.resources.kafka import KafkaResource

BATCH = 200
# Runs are committed a moment after their update time; look a little behind the watermark.
OVERLAP = timedelta(seconds=60)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def dead_runs(instance: dg.DagsterInstance, since: datetime, now: datetime) -> tuple[list[dg.RunRecord], list[dg.RunRecord], list[dg.RunRecord]]:
    """(dead and unpublished, not yet decided, all fetched) failed runs updated since `since`."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    grace = timedelta(seconds=settings.retry_grace_seconds())
    dead, undecided = [], []
    for record in records:
        tags = record.dagster_run.tags
        if PUBLISHED_TAG in tags or tags.get(WILL_RETRY_TAG) == "true":
            continue
        ended = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else _as_utc(record.update_timestamp)
        if WILL_RETRY_TAG not in tags and instance.run_retries_enabled and now - ended < grace:
            # Dagster adds `dagster/will_retry` just after the failure; wait for its verdict.
            undecided.append(record)
            continue
        dead.append(record)
    return dead, undecided, list(records)


@dg.sensor(
    name="dlq_failure_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes each run that failed for good to Kafka topic jobs-dlq, once, even after a Kafka outage.",
)
def dlq_failure_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    instance = context.instance
    now = datetime.now(UTC)
    since = now - timedelta(hours=settings.lookback_hours())
    if context.cursor:
        since = max(since, datetime.fromtimestamp(float(context.cursor), UTC) - OVERLAP)
    dead, undecided, fetched = dead_runs(instance, since, now)

    published, failures = [], []
    if dead:
        messages = [build_message(instance, record.dagster_run, _failed_at(record)) for record in dead]
        try:
            outcomes = publish(kafka, DLQ_TOPIC, [(m.job_name, m.encode()) for m in messages])
        except Exception as error:  # noqa: BLE001 - the broker is down: nothing published, retried next tick
            outcomes = [error] * len(messages)
        for message, outcome in zip(messages, outcomes):
            if outcome is None:
                instance.add_run_tags(message.run_id, {PUBLISHED_TAG: iso_z(datetime.now(UTC))})
                published.append(message)
                context.log.info(
                    f"DLQ: {message.job_name} run {message.run_id} ({message.kind} {message.error_class}, "
                    f"retries {message.retry_count}, correlation {message.correlation_id})"
                )
            else:
                failures.append((message, outcome))
    if failures:
        # Failing the tick shows the outage in the UI; the untagged runs are published by a
        # later tick, and the cursor stays where it was.
        raise RuntimeError(
            f"{len(failures)} dead run(s) not published to {DLQ_TOPIC} (will retry next tick): "
            f"{type(failures[0][1]).__name__}: {failures[0][1]}"
        )

    if undecided:
        watermark = min(_as_utc(r.update_timestamp) for r in undecided)
    elif fetched:
        watermark = max(_as_utc(r.update_timestamp) for r in fetched)
    else:
        watermark = since + OVERLAP if context.cursor else now - OVERLAP
    cursor = str(watermark.timestamp())
    if not published:
        reason = "no dead runs to publish"
        if undecided:
            reason += f" ({len(undecided)} awaiting Dagster's retry decision)"
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    return dg.SensorResult(cursor=cursor)


def _failed_at(record: dg.RunRecord) -> datetime:
    return datetime.fromtimestamp(record.end_time, UTC) if record.end_time else _as_utc(record.update_timestamp)
