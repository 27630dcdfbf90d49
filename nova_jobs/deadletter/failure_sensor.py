"""Publish every run that failed for good to `jobs-dlq`, exactly once, even across Kafka outages.

Not a run-failure sensor: its cursor moves on even when the send fails, and it only wakes on a
new failure. This sensor walks the runs in creation (storage id) order, a page per tick, and
remembers in its cursor the runs it has seen that are not settled yet (still running, awaiting
Dagster's retry decision, or dead and not yet published). Tagging a run published never moves
it back into view, so a backlog of any size drains, a page per tick.

Each dead run is sent on its own and tagged `nova/dlq_published=<its run id>` as soon as the
broker has acknowledged it (acks from all in-sync replicas): a failed tag write or a crash can
repeat at most that one message, which carries `run_id` for consumers to drop. A run that
Dagster will retry (`dagster/will_retry=true`) is not dead unless its retry never appears.
Waiting is timed by this sensor's own clock (when it first saw the run), never by timestamps
other processes wrote.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from nova_jobs.deadletter import settings
from nova_jobs.deadletter.headers import dlq_headers
from nova_jobs.lib.tags import PARENT_RUN_TAG, WILL_RETRY_TAG
from nova_jobs.deadletter.message import (
    DLQ_TOPIC,
    build_message,
    is_published,
    published_marker,
)
from nova_jobs.deadletter.topics import ensure_topics_once
from nova_jobs.lib.redact import redact_text
from nova_jobs.resources.kafka import KafkaResource

SEND_TIMEOUT_SECONDS = 10.0
# A run whose position was lost (deleted) is found again by creation time, a little earlier.
RESCAN_OVERLAP = timedelta(seconds=60)
FINISHED_OK = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED}
ID_CHUNK = 500


@dataclass
class Position:
    """The sensor cursor: the last run looked at, and the unsettled runs before it (run id ->
    when this sensor first saw it, by its own clock)."""

    after: str | None = None
    after_created: float | None = None
    open: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: str | None) -> Position:
        # A cursor of another shape (the old timestamp watermark) starts a fresh walk over the
        # lookback; published runs carry their marker, so nothing is sent twice.
        try:
            data = json.loads(cursor) if cursor else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls()
        opened = data.get("open")
        return cls(
            after=data.get("after") if isinstance(data.get("after"), str) else None,
            after_created=data.get("after_created") if isinstance(data.get("after_created"), (int, float)) else None,
            open={k: float(v) for k, v in opened.items() if isinstance(v, (int, float))} if isinstance(opened, dict) else {},
        )

    def dump(self) -> str:
        return json.dumps({"after": self.after, "after_created": self.after_created, "open": self.open},
                          separators=(",", ":"))


def _retry_appeared(instance: dg.DagsterInstance, run_id: str) -> bool:
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags={PARENT_RUN_TAG: run_id}), limit=1))


def _records_by_id(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.RunRecord]:
    records: list[dg.RunRecord] = []
    for start in range(0, len(run_ids), ID_CHUNK):
        records.extend(instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids[start:start + ID_CHUNK])))
    return sorted(records, key=lambda r: r.storage_id)


def _new_records(instance: dg.DagsterInstance, position: Position, now: float, limit: int) -> list[dg.RunRecord]:
    """The next page of runs after the cursor, in creation order."""
    after = position.after
    if after is not None and instance.get_run_record_by_id(after) is not None:
        return list(instance.get_run_records(cursor=after, ascending=True, limit=limit))
    oldest = datetime.fromtimestamp(now, UTC) - timedelta(hours=settings.lookback_hours())
    if after is not None and position.after_created is not None:
        oldest = max(oldest, datetime.fromtimestamp(position.after_created, UTC) - RESCAN_OVERLAP)
    return list(instance.get_run_records(filters=dg.RunsFilter(created_after=oldest), ascending=True, limit=limit))


@dataclass
class Sorted:
    dead: list[dg.RunRecord] = field(default_factory=list)
    waiting: dict[str, float] = field(default_factory=dict)
    awaiting_retry: int = 0


def sort_runs(instance: dg.DagsterInstance, records: list[dg.RunRecord], first_seen: dict[str, float],
              now: float) -> Sorted:
    """Dead runs to publish, and runs to look at again (with when they were first seen)."""
    grace = settings.retry_grace_seconds()
    retry_wait = settings.retry_wait_seconds()
    stale = settings.lookback_hours() * 3600
    result = Sorted()
    for record in records:
        run = record.dagster_run
        seen = first_seen.get(run.run_id, now)
        if run.status in FINISHED_OK:
            continue
        if run.status != dg.DagsterRunStatus.FAILURE:
            # Not finished yet; a run stuck for longer than the lookback is given up on.
            if now - seen < stale:
                result.waiting[run.run_id] = seen
            continue
        if is_published(run, instance):
            continue
        will_retry = run.tags.get(WILL_RETRY_TAG)
        if will_retry == "true":
            if _retry_appeared(instance, run.run_id):
                continue
            if now - seen < retry_wait:
                result.waiting[run.run_id] = seen
                result.awaiting_retry += 1
                continue
        elif will_retry is None and instance.run_retries_enabled and now - seen < grace:
            # Dagster adds `dagster/will_retry` just after the failure; wait for its verdict.
            result.waiting[run.run_id] = seen
            result.awaiting_retry += 1
            continue
        result.dead.append(record)
    return result


@dg.sensor(
    name="dlq_failure_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes each run that failed for good to Kafka topic jobs-dlq, once, even after a Kafka outage.",
)
def dlq_failure_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    instance = context.instance
    now = time.time()
    page = settings.page_size()
    position = Position.load(context.cursor)

    known = _records_by_id(instance, list(position.open))
    fresh = _new_records(instance, position, now, page)
    runs = sort_runs(instance, known + fresh, position.open, now)
    if fresh:
        position.after = fresh[-1].dagster_run.run_id
        position.after_created = fresh[-1].create_timestamp.timestamp()

    # Bounded work per tick: the dead runs past the page wait in the cursor for the next tick.
    to_send, later = runs.dead[:page], runs.dead[page:]
    position.open = {**runs.waiting, **{r.dagster_run.run_id: position.open.get(r.dagster_run.run_id, now) for r in later}}
    sent, unbuilt = _publish(context, kafka, to_send)
    for record in unbuilt:
        position.open[record.dagster_run.run_id] = position.open.get(record.dagster_run.run_id, now)

    cursor = position.dump()
    if not sent:
        reason = "no dead runs to publish"
        if runs.awaiting_retry:
            reason += f" ({runs.awaiting_retry} awaiting Dagster's retry)"
        return dg.SensorResult(skip_reason=reason, cursor=cursor)
    return dg.SensorResult(cursor=cursor)


def _publish(context: dg.SensorEvaluationContext, kafka: KafkaResource,
             records: list[dg.RunRecord]) -> tuple[int, list[dg.RunRecord]]:
    """Send each dead run and tag it once acknowledged, one at a time, so a failure (broker or
    run storage) leaves at most the run in hand acknowledged but untagged. Returns how many were
    sent, and the runs whose message could not be built (kept for the next tick)."""
    if not records:
        return 0, []
    instance = context.instance
    sent, unbuilt = 0, []
    problem = ensure_topics_once(kafka)
    if problem:
        context.log.warning(f"DLQ: {problem}")
    try:
        producer = kafka.producer()
    except Exception as error:  # noqa: BLE001 - the broker is down: nothing sent, retried next tick
        raise RuntimeError(_not_published(len(records), error)) from None
    try:
        for index, record in enumerate(records):
            run = record.dagster_run
            try:
                message = build_message(instance, run, _failed_at(record))
            except Exception as error:  # noqa: BLE001 - one unreadable run must not hold back the rest
                context.log.error(f"DLQ: cannot build the message of run {run.run_id}: {redact_text(str(error))}")
                unbuilt.append(record)
                continue
            try:
                future = producer.send(DLQ_TOPIC, key=message.job_name.encode("utf-8"), value=message.encode(),
                                       headers=dlq_headers(message))
                producer.flush(timeout=SEND_TIMEOUT_SECONDS)
                future.get(timeout=SEND_TIMEOUT_SECONDS)
            except Exception as error:  # noqa: BLE001 - the tick fails; tagged runs stay done
                raise RuntimeError(_not_published(len(records) - index, error)) from None
            # Failing the tick leaves this one run to be sent again: consumers drop it by run_id.
            instance.add_run_tags(run.run_id, published_marker(run.run_id))
            sent += 1
            context.log.info(
                f"DLQ: {message.job_name} run {message.run_id} ({message.kind} {message.error_class}, "
                f"retries {message.retry_count}, correlation {message.correlation_id})"
            )
    finally:
        producer.close(timeout=SEND_TIMEOUT_SECONDS)
    return sent, unbuilt


def _not_published(count: int, error: BaseException) -> str:
    # Failing the tick shows the outage in the UI; the cursor stays where it was, and the
    # untagged runs are published by a later tick.
    return (f"{count} dead run(s) not published to {DLQ_TOPIC} (will retry next tick): "
            f"{type(error).__name__}: {redact_text(str(error))}")


def _failed_at(record: dg.RunRecord) -> datetime:
    if record.end_time:
        return datetime.fromtimestamp(record.end_time, UTC)
    moment = record.update_timestamp
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
