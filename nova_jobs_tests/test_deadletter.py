"""The dead-letter queue against a real tansu broker and real Dagster instances: failed runs
published once (also across a Kafka outage), replayed, and the operator CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest

import nova_jobs.trending.assets as trending_assets
from nova_jobs.cli import main as cli_main
from nova_jobs.deadletter import dead_letter_defs
from nova_jobs.deadletter.failure_sensor import dlq_failure_sensor
from nova_jobs.deadletter.kafka_io import publish, read_topics
from nova_jobs.deadletter.message import (
    CONTROL_TOPIC,
    DLQ_TOPIC,
    DlqMessage,
    parse_message,
)
from nova_jobs.deadletter.replay_sensor import ReplayState
from nova_jobs.lib.tags import PUBLISHED_TAG, job_tags
from nova_jobs.lib.timing import iso_z
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_dev.localstack import free_port, tansu_process
from nova_jobs_tests.conftest import dlq_messages

pytestmark = pytest.mark.integration

FAST_RETRIES = dg.RetryPolicy(max_retries=2, delay=0.05)


@pytest.fixture
def trending_1h_job(monkeypatch):
    """The real trending_1h asset and job, with quick retries instead of 2-16 s backoff."""
    asset = trending_assets.build_trending_asset(WINDOWS["1h"], FAST_RETRIES)
    job = dg.define_asset_job("trending_1h", selection=[asset.key], tags=job_tags("trending_1h"))
    return asset, job


def make_defs(trending_1h_job, clickhouse, redis_resource, kafka_resource) -> dg.Definitions:
    asset, job = trending_1h_job
    return dg.Definitions.merge(
        dg.Definitions(assets=[asset], jobs=[job],
                       resources={"clickhouse": clickhouse, "redis": redis_resource, "kafka": kafka_resource}),
        dead_letter_defs([job]),
    )


def closed_clickhouse() -> ClickHouseResource:
    return ClickHouseResource(url=f"http://127.0.0.1:{free_port()}", timeout_ms=2000)


@pytest.fixture
def instance():
    # The project's run-retry policy (dagster.yaml): re-execute only runs that crashed outside ops.
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}}
    ) as inst:
        yield inst


def run_job(defs, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("trending_1h").execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def failure_tick(defs, instance, kafka_resource, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"kafka": kafka_resource})
    return dlq_failure_sensor(context)


def test_failed_run_reaches_the_dlq_once_with_the_contract_fields(
    trending_1h_job, redis_resource, kafka_resource, instance
):
    defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka_resource)
    result = run_job(defs, instance)
    assert not result.success

    first = failure_tick(defs, instance, kafka_resource)
    second = failure_tick(defs, instance, kafka_resource, cursor=first.cursor)
    assert second.skip_reason is not None  # nothing left to publish

    [message] = dlq_messages(kafka_resource, {result.run_id})
    assert {k: message[k] for k in ("schema_version", "job_name", "error_class", "kind", "retry_count",
                                     "correlation_id", "run_id", "partition_key", "context")} == {
        "schema_version": 1,
        "job_name": "trending_1h",
        "error_class": "ConnectionRefusedError",
        "kind": "transient",
        "retry_count": FAST_RETRIES.max_retries,
        "correlation_id": result.run_id,
        "run_id": result.run_id,
        "partition_key": None,
        "context": {"window": "1h"},
    }
    assert "Connection refused" in message["error"]
    assert "max_retries" not in message["error"]
    assert message["timestamp"].endswith("Z")
    parse_message(json.dumps(message))  # valid for the replay sensor
    assert PUBLISHED_TAG in instance.get_run_by_id(result.run_id).tags


def test_permanent_failure_is_published_without_retries(
    trending_1h_job, clickhouse, redis_resource, kafka_resource, instance, monkeypatch
):
    # A bad `scoring` in run config is refused at launch; a bad deployment setting fails the run.
    monkeypatch.setenv("TRENDING_SCORING", "popular")
    defs = make_defs(trending_1h_job, clickhouse, redis_resource, kafka_resource)
    result = run_job(defs, instance, run_config={"ops": {"cache__trending_1h": {"config": {"top_k": 10}}}})
    assert not result.success
    failure_tick(defs, instance, kafka_resource)
    [message] = dlq_messages(kafka_resource, {result.run_id})
    assert message["kind"] == "permanent"
    assert message["error_class"] == "SettingError"
    assert "TRENDING_SCORING" in message["error"]
    assert message["retry_count"] == 0
    assert message["context"] == {"window": "1h", "ops_config": {"cache__trending_1h": {"top_k": 10}}}


def test_a_run_that_will_be_retried_is_not_dead_its_last_attempt_is(
    trending_1h_job, redis_resource, kafka_resource
):
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True, "max_retries": 1}}) as instance:
        defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka_resource)
        first = run_job(defs, instance)
        assert instance.get_run_by_id(first.run_id).tags.get("dagster/will_retry") == "true"
        cursor = failure_tick(defs, instance, kafka_resource).cursor
        assert dlq_messages(kafka_resource, {first.run_id}) == []

        # Its re-execution, as the retry daemon tags it; `dagster/max_retries=0` makes it the last
        # attempt (execute_in_process cannot set the run-group fields Dagster counts retries by).
        retry = run_job(defs, instance, tags={"dagster/parent_run_id": first.run_id, "dagster/root_run_id": first.run_id,
                                              "dagster/retry_number": "1", "dagster/max_retries": "0"})
        assert instance.get_run_by_id(retry.run_id).tags.get("dagster/will_retry") == "false"
        failure_tick(defs, instance, kafka_resource, cursor=cursor)
        [message] = dlq_messages(kafka_resource, {first.run_id, retry.run_id})
        assert message["run_id"] == retry.run_id
        assert message["correlation_id"] == first.run_id
        # Op retries in the last attempt plus the run re-execution before it.
        assert message["retry_count"] == FAST_RETRIES.max_retries + 1


def test_a_failure_while_kafka_is_down_is_published_once_it_is_back(
    trending_1h_job, redis_resource, instance, tmp_path
):
    port = free_port()
    kafka = KafkaResource(brokers=f"127.0.0.1:{port}", request_timeout_ms=2000)
    broker = tansu_process(port=port, log_path=tmp_path / "tansu.log").start()
    try:
        defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka)
        broker.stop()
        result = run_job(defs, instance)
        assert not result.success
        with pytest.raises(Exception, match="not published"):
            failure_tick(defs, instance, kafka)
        assert PUBLISHED_TAG not in instance.get_run_by_id(result.run_id).tags

        broker.start()
        cursor = failure_tick(defs, instance, kafka).cursor
        failure_tick(defs, instance, kafka, cursor=cursor)
        failure_tick(defs, instance, kafka)
        [message] = dlq_messages(kafka, {result.run_id})
        assert message["kind"] == "transient"
    finally:
        broker.stop()


def cursor_at_end(kafka_resource) -> str:
    """A replay cursor past every record already on the shared test broker."""
    _, offsets = read_topics(kafka_resource, [DLQ_TOPIC, CONTROL_TOPIC], max_records=100_000)
    return ReplayState(offsets=offsets).dump()


def replay_tick(defs, instance, kafka_resource, cursor):
    sensor = defs.resolve_sensor_def("dlq_replay_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"kafka": kafka_resource})
    return sensor(context)


def fail_and_publish(trending_1h_job, redis_resource, kafka_resource, instance):
    """A trending_1h run failed on a ClickHouse nobody listens on, published by the failure
    sensor: (a replay cursor from just before it, the definitions it ran in, its result)."""
    start = cursor_at_end(kafka_resource)
    defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka_resource)
    failed = run_job(defs, instance)
    failure_tick(defs, instance, kafka_resource)
    return start, defs, failed


def control_decisions(kafka_resource, run_id) -> list[dict]:
    records, _ = read_topics(kafka_resource, [CONTROL_TOPIC])
    decisions = [json.loads(r.value) for r in records]
    return [d for d in decisions if d.get("type") == "decision" and d.get("run_id") == run_id]


def test_replay_after_the_fault_is_removed_keeps_the_correlation_id(
    trending_1h_job, clickhouse, redis_resource, redis_client, kafka_resource, instance, monkeypatch
):
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    start, _, failed = fail_and_publish(trending_1h_job, redis_resource, kafka_resource, instance)

    # The fault is removed: ClickHouse is back.
    fixed = make_defs(trending_1h_job, clickhouse, redis_resource, kafka_resource)
    tick = replay_tick(fixed, instance, kafka_resource, start)
    [request] = tick.run_requests
    assert request.job_name == "trending_1h"
    assert request.tags["nova/correlation_id"] == failed.run_id
    assert request.tags["nova/replay_of"] == failed.run_id
    assert request.tags["nova/replay_attempt"] == "1"

    replay = run_job(fixed, instance, run_config=request.run_config, tags={**request.tags, "dagster/run_key": request.run_key})
    assert replay.success
    assert redis_client.get("nova:cache:trending:1h") == "[]"

    again = replay_tick(fixed, instance, kafka_resource, tick.cursor)
    assert again.run_requests == []
    assert again.skip_reason is not None
    states = [d["state"] for d in control_decisions(kafka_resource, failed.run_id)]
    assert states == ["replayed", "succeeded"]


def test_a_transient_failure_waits_for_its_cooldown(trending_1h_job, redis_resource, kafka_resource, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "3600")
    start, defs, failed = fail_and_publish(trending_1h_job, redis_resource, kafka_resource, instance)
    tick = replay_tick(defs, instance, kafka_resource, start)
    assert tick.run_requests == []
    state = ReplayState.load(tick.cursor)
    assert [w["message"]["run_id"] for w in state.waiting] == [failed.run_id]

    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    [request] = replay_tick(defs, instance, kafka_resource, tick.cursor).run_requests
    assert request.tags["nova/replay_of"] == failed.run_id


def dlq_record(job_name: str, kind: str = "transient") -> DlqMessage:
    run_id = str(uuid.uuid4())
    return DlqMessage(job_name=job_name, error="[Errno 111] Connection refused", error_class="ConnectionRefusedError",
                      kind=kind, timestamp=iso_z(datetime.now(UTC)),
                      retry_count=4, correlation_id=run_id, run_id=run_id, context={"window": "1h"})


def test_bad_records_are_skipped_and_counted_and_the_sensor_goes_on(
    trending_1h_job, redis_resource, kafka_resource, instance, monkeypatch
):
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka_resource)
    start = cursor_at_end(kafka_resource)
    good = dlq_record("trending_1h")
    unknown = dlq_record("no_such_job")
    outcomes = publish(kafka_resource, DLQ_TOPIC, [
        ("trending_1h", b"{not json"),
        ("trending_1h", json.dumps({"schema_version": 1, "job_name": "trending_1h"}).encode()),
        ("no_such_job", unknown.encode()),
        ("trending_1h", good.encode()),
        ("trending_1h", good.encode()),
    ])
    assert outcomes == [None] * 5

    tick = replay_tick(defs, instance, kafka_resource, start)
    [request] = tick.run_requests
    assert request.tags["nova/replay_of"] == good.run_id
    assert ReplayState.load(tick.cursor).counts == {"malformed": 2, "unknown_job": 1, "duplicate": 1, "replayed": 1}

    # Nothing new: nothing launched, nothing recounted.
    again = replay_tick(defs, instance, kafka_resource, tick.cursor)
    assert again.run_requests == []
    assert ReplayState.load(again.cursor).counts == ReplayState.load(tick.cursor).counts


def test_permanent_failures_are_parked_until_an_operator_replays_them(
    trending_1h_job, redis_resource, kafka_resource, kafka_brokers, instance, capsys
):
    defs = make_defs(trending_1h_job, closed_clickhouse(), redis_resource, kafka_resource)
    start = cursor_at_end(kafka_resource)
    parked = dlq_record("trending_1h", kind="permanent")
    assert publish(kafka_resource, DLQ_TOPIC, [("trending_1h", parked.encode())]) == [None]
    tick = replay_tick(defs, instance, kafka_resource, start)
    assert tick.run_requests == []

    assert cli_main(["dlq", "list", "--json", "--job", "trending_1h"]) == 0
    rows = {row["run_id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[parked.run_id]["state"] == "parked"

    assert cli_main(["dlq", "replay", parked.correlation_id]) == 0
    capsys.readouterr()
    tick = replay_tick(defs, instance, kafka_resource, tick.cursor)
    [request] = tick.run_requests
    assert request.tags["nova/correlation_id"] == parked.correlation_id
    assert "nova/replay_request" in request.tags

    assert cli_main(["dlq", "list", "--json", "--state", "replayed"]) == 0
    rows = {row["run_id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[parked.run_id]["state"] == "replayed"
