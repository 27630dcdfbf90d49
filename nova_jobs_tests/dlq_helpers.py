"""Shared by the replay-sensor tests: two small jobs (one daily-partitioned) with the
dead-letter sensors, a broker of the module's own (so counts and offsets are the test's), DLQ
messages as dicts, and a sensor tick the way the daemon evaluates it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from nova_jobs.deadletter import dead_letter_defs
from nova_jobs.deadletter.kafka_io import publish, read_topics
from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC
from nova_jobs.deadletter.replay_sensor import ReplayState
from nova_jobs.lib.timing import iso_z
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_dev.exporter_bench import empty_job

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")


plain_job = empty_job("plain")
daily_job = empty_job("daily", DAILY)
other_job = empty_job("other")


def make_defs(kafka: KafkaResource) -> dg.Definitions:
    jobs = [plain_job, daily_job, other_job]
    return dg.Definitions.merge(dg.Definitions(jobs=jobs, resources={"kafka": kafka}), dead_letter_defs(jobs))


def message(job_name: str = "plain", kind: str = "transient", age: timedelta = timedelta(minutes=10),
            **fields: Any) -> dict[str, Any]:
    run_id = str(uuid.uuid4())
    data = {"schema_version": 1, "job_name": job_name, "error": "[Errno 111] Connection refused",
            "error_class": "ConnectionRefusedError", "kind": kind, "timestamp": iso_z(datetime.now(UTC) - age),
            "retry_count": 3, "correlation_id": run_id, "run_id": run_id, "partition_key": None,
            "context": {}, "replay_of": None, "replay_attempt": 0}
    data.update(fields)
    return data


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def send(kafka: KafkaResource, topic: str, values: list[bytes]) -> None:
    assert publish(kafka, topic, [("k", value) for value in values]) == [None] * len(values)


def ends(kafka: KafkaResource) -> dict[str, dict[str, int]]:
    _, offsets = read_topics(kafka, [DLQ_TOPIC, CONTROL_TOPIC], max_records=1_000_000)
    return offsets


def cursor_at_end(kafka: KafkaResource) -> str:
    return ReplayState(offsets=ends(kafka)).dump()


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, kafka: KafkaResource, cursor: str | None):
    """One evaluation of the replay sensor (the daemon's call: run requests resolved against
    the jobs, so a bad partition key fails here as it would there)."""
    sensor = defs.resolve_sensor_def("dlq_replay_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources={"kafka": kafka})
    return sensor.evaluate_tick(context)


def decisions(kafka: KafkaResource, since: dict[str, dict[str, int]] | None = None) -> list[dict[str, Any]]:
    records, _ = read_topics(kafka, [CONTROL_TOPIC], since, max_records=1_000_000)
    found = []
    for record in records:
        try:
            data = json.loads(record.value)
        except (ValueError, RecursionError):
            continue  # a test's own garbage
        if isinstance(data, dict) and data.get("type") == "decision":
            found.append(data)
    return found


def run_replay(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a run request: a run of its job with its tags and partition."""
    job = defs.resolve_job_def(request.job_name)
    tags = {**request.tags, "dagster/run_key": request.run_key}
    return job.execute_in_process(instance=instance, tags=tags, partition_key=request.partition_key,
                                  run_config=request.run_config, raise_on_error=False)


def grown(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], topic: str) -> tuple[int, int]:
    """(partition, first new offset) of the one partition of `topic` that records were sent to
    (one key: one partition)."""
    [partition] = [p for p, end in after[topic].items() if end > before.get(topic, {}).get(p, 0)]
    return int(partition), before.get(topic, {}).get(partition, 0)
