"""The operator's DLQ in Dagster: the `kafka/jobs_dlq` asset observed on each replay-sensor tick,
the `dlq_replay` and `dlq_discard` jobs launched through Dagster and carried out once by the
sensor, the redrive rate, expired messages kept, error headers on published records, and the
topics created with a retention. Real tansu broker, real Dagster instance."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from nova_jobs.deadletter import topics
from nova_jobs.deadletter.failure_sensor import dlq_failure_sensor
from nova_jobs.deadletter.kafka_io import read_topics
from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC
from nova_jobs.deadletter.observe import DLQ_ASSET_KEY
from nova_jobs.observability.dlq_watch import parse_tracking
from nova_jobs_dev.localstack import tansu_process
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_tests.dlq_helpers import cursor_at_end, decisions, encode, ends, make_defs, message, send, tick

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka(kafka: KafkaResource, monkeypatch: pytest.MonkeyPatch) -> KafkaResource:
    """The module's own broker (conftest), with automatic replays held back so operator
    requests are what acts, and a UI address for the run links."""
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "3600")
    monkeypatch.setenv("NOVA_DAGSTER_UI_URL", "https://dagster.example.com/")
    return kafka


def observation(result) -> dict:
    [event] = result.asset_events
    assert event.asset_key == DLQ_ASSET_KEY
    return event.metadata


def rows(metadata) -> dict[str, dict]:
    """Table rows by failed run id (from the run link)."""
    return {r.data["failed_run"].rsplit("/", 1)[1]: r.data for r in metadata["messages"].records}


def launch(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, config: dict):
    op = {"dlq_replay": "request_dlq_replay", "dlq_discard": "request_dlq_discard"}[job_name]
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config={"ops": {op: {"config": config}}}, raise_on_error=False)


def states_of(kafka, since, run_id) -> list[str]:
    return [d["state"] for d in decisions(kafka, since) if d["run_id"] == run_id]


def test_each_tick_observes_the_queue_counts_and_table(kafka, instance):
    defs = make_defs(kafka)
    start = cursor_at_end(kafka)
    parked = message("other", kind="permanent")
    waiting = message("plain")
    old = message("plain", age=timedelta(hours=30))  # past NOVA_DLQ_MAX_AGE_HOURS (24)
    send(kafka, DLQ_TOPIC, [encode(parked), encode(waiting), encode(old)])

    first = tick(defs, instance, kafka, start)
    meta = observation(first)
    assert (meta["state/parked"].value, meta["state/waiting"].value, meta["state/expired"].value) == (1, 1, 1)
    assert meta["unresolved"].value == 3
    assert (meta["job/plain"].value, meta["job/other"].value, meta["job/daily"].value) == (2, 1, 0)
    assert 30 * 3600 <= meta["oldest_unresolved_age_seconds"].value < 31 * 3600
    table = rows(meta)
    assert table[parked["run_id"]]["state"] == "parked"
    assert table[waiting["run_id"]]["state"] == "waiting"
    # Too old to replay automatically: shown as expired, not dropped.
    assert table[old["run_id"]]["state"] == "expired"
    assert table[parked["run_id"]]["error_class"] == "ConnectionRefusedError"
    assert table[parked["run_id"]]["root_cause"] == "[Errno 111] Connection refused"
    assert table[parked["run_id"]]["failed_run"] == f"https://dagster.example.com/runs/{parked['run_id']}"
    assert meta["messages"].records[0].data["failed_run"].endswith(old["run_id"])  # oldest first

    # The next tick observes again, with what changed.
    later = message("daily", kind="permanent", partition_key="2026-02-01")
    send(kafka, DLQ_TOPIC, [encode(later)])
    meta = observation(tick(defs, instance, kafka, first.cursor))
    assert (meta["state/parked"].value, meta["job/daily"].value, meta["unresolved"].value) == (2, 1, 4)


def test_dlq_replay_launched_twice_through_dagster_replays_once(kafka, instance):
    defs = make_defs(kafka)
    start = cursor_at_end(kafka)
    parked = message("other", kind="permanent")
    send(kafka, DLQ_TOPIC, [encode(parked)])
    parked_tick = tick(defs, instance, kafka, start)
    assert parked_tick.run_requests == []

    since = ends(kafka)
    for _ in range(2):
        run = launch(defs, instance, "dlq_replay", {"correlation_id": parked["correlation_id"]})
        assert run.success
    # Another selector naming the same message: still one replay.
    assert launch(defs, instance, "dlq_replay", {"job_name": "other", "all_parked": True}).success

    replay_tick = tick(defs, instance, kafka, parked_tick.cursor)
    [request] = replay_tick.run_requests
    assert request.tags["nova/replay_of"] == parked["run_id"]
    assert tick(defs, instance, kafka, replay_tick.cursor).run_requests == []
    assert states_of(kafka, since, parked["run_id"]).count("replayed") == 1
    meta = observation(replay_tick)
    row = rows(meta)[parked["run_id"]]
    assert (row["state"], row["kind"], row["error_class"]) == ("replayed", "permanent", "ConnectionRefusedError")
    assert meta["state/parked"].value == 0


def test_dlq_replay_of_an_unknown_correlation_id_fails_clearly(kafka, instance):
    run = launch(make_defs(kafka), instance, "dlq_replay", {"correlation_id": "no-such-failure"})
    assert not run.success
    [failure] = [e for e in run.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "no DLQ message has correlation id 'no-such-failure'" in failure.step_failure_data.error.message


def test_dlq_discard_through_dagster_is_final_and_acts_once(kafka, instance):
    defs = make_defs(kafka)
    start = cursor_at_end(kafka)
    parked = message("other", kind="permanent")
    waiting = message("plain")
    send(kafka, DLQ_TOPIC, [encode(parked), encode(waiting)])
    first = tick(defs, instance, kafka, start)
    assert observation(first)["state/waiting"].value == 1

    with pytest.raises(dg.DagsterInvalidConfigError, match="reason"):
        launch(defs, instance, "dlq_discard", {"correlation_id": parked["correlation_id"]})

    since = ends(kafka)
    reason = "schema fixed upstream, data re-imported"
    for _ in range(2):
        assert launch(defs, instance, "dlq_discard", {"correlation_ids": [parked["correlation_id"], waiting["correlation_id"]],
                                                      "reason": reason}).success
    second = tick(defs, instance, kafka, first.cursor)
    discarded = [d for d in decisions(kafka, since) if d["state"] == "discarded"]
    assert sorted(d["run_id"] for d in discarded) == sorted([parked["run_id"], waiting["run_id"]])
    assert {d["reason"] for d in discarded} == {reason}
    assert all(d["requested_by"].startswith("dagster run ") for d in discarded)
    meta = observation(second)
    assert (meta["unresolved"].value, meta["total/discarded"].value) == (0, 2)

    # Final: a replay asked afterwards does nothing.
    assert launch(defs, instance, "dlq_replay", {"correlation_id": parked["correlation_id"]}).success
    third = tick(defs, instance, kafka, second.cursor)
    assert third.run_requests == []
    assert states_of(kafka, since, parked["run_id"]).count("discarded") == 1


def test_operator_replays_are_released_at_the_redrive_rate_oldest_first(kafka, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_REDRIVE_PER_TICK", "2")
    defs = make_defs(kafka)
    start = cursor_at_end(kafka)
    # Distinct partitions: one replay per job and partition may be in flight.
    backlog = [message("daily", kind="permanent", partition_key=f"2026-03-0{day}", age=timedelta(hours=day))
               for day in range(1, 6)]
    send(kafka, DLQ_TOPIC, [encode(m) for m in backlog])
    cursor = tick(defs, instance, kafka, start).cursor
    # Listed newest first: released oldest first all the same.
    ids = [m["correlation_id"] for m in reversed(backlog)]
    assert launch(defs, instance, "dlq_replay", {"correlation_ids": ids}).success

    released = []
    for _ in range(3):
        result = tick(defs, instance, kafka, cursor)
        cursor = result.cursor
        released.append([r.tags["nova/replay_of"] for r in result.run_requests])
    oldest_first = [m["run_id"] for m in sorted(backlog, key=lambda m: m["timestamp"])]
    assert released == [oldest_first[:2], oldest_first[2:4], oldest_first[4:]]


@dg.op
def _refused() -> None:
    raise ConnectionRefusedError(111, "Connection refused")


@dg.job(name="plain")
def failing_plain() -> None:
    _refused()


def test_published_records_carry_error_headers(kafka, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_RETRY_GRACE_SECONDS", "0")
    since = ends(kafka)
    result = failing_plain.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = dg.build_sensor_context(instance=instance, resources={"kafka": kafka})
    dlq_failure_sensor(context)
    records, _ = read_topics(kafka, [DLQ_TOPIC], since)
    [record] = [r for r in records if result.run_id.encode() in (r.value or b"")]
    assert dict(record.headers) == {
        "nova.errors.job": b"plain",
        "nova.errors.run_id": result.run_id.encode(),
        "nova.errors.kind": b"transient",
        "nova.errors.error_class": b"ConnectionRefusedError",
        "nova.errors.correlation_id": result.run_id.encode(),
    }


def test_dlq_topics_are_created_with_their_retention(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_RETENTION_DAYS", "2")
    assert {t.name: t.topic_configs for t in topics.new_topics()} == {
        DLQ_TOPIC: {"retention.ms": str(2 * 24 * 3600 * 1000)},
        CONTROL_TOPIC: {"retention.ms": str(2 * 24 * 3600 * 1000)},
    }
    with tansu_process(log_path=tmp_path / "tansu.log") as broker:
        kafka = KafkaResource(brokers=f"127.0.0.1:{broker.port}")
        assert sorted(topics.ensure_topics(kafka)) == sorted([DLQ_TOPIC, CONTROL_TOPIC])
        assert topics.ensure_topics(kafka) == []  # existing topics are left as they are
        admin = kafka.admin()
        try:
            described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([DLQ_TOPIC, CONTROL_TOPIC])}
            assert described == {DLQ_TOPIC: 3, CONTROL_TOPIC: 3}
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, DLQ_TOPIC)])
        finally:
            admin.close()
        # tansu answers DescribeConfigs with no entries; a broker that reports them must say 2 days.
        reported = repr(configs)
        if "retention.ms" in reported:
            assert str(2 * 24 * 3600 * 1000) in reported


def test_parked_beyond_the_tracking_cap_are_counted_and_flagged(kafka, instance, monkeypatch, capfd):
    monkeypatch.setenv("NOVA_DLQ_MAX_TRACKED", "2")
    defs = make_defs(kafka)
    start = cursor_at_end(kafka)
    send(kafka, DLQ_TOPIC, [encode(message("other", kind="permanent")) for _ in range(3)])
    result = tick(defs, instance, kafka, start)
    assert "the cap of 2 listed is reached (NOVA_DLQ_MAX_TRACKED)" in capfd.readouterr().err
    meta = observation(result)
    assert (meta["state/parked"].value, meta["untracked_parked"].value, len(meta["messages"].records)) == (3, 1, 2)
    # What the exporter serves as nova_dlq_tracked_messages / nova_dlq_tracked_cap (alert: equal).
    assert parse_tracking(result.cursor) == {"listed": 2, "untracked": 1, "cap": 2}
