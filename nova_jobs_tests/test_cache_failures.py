"""Redis refusing writes fails the run, classified by the cause, on real redis-servers: a replica
after a failover (READONLY), memory full under noeviction (OOM), a key an ACL denies, and a TTL
Redis would refuse, rejected at launch. The failover ends with the DLQ replay restoring the
cache (real tansu broker, real sensors)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nova_jobs.trending.assets as trending_assets
from nova_jobs.deadletter import dead_letter_defs
from nova_jobs.deadletter.failure_sensor import dlq_failure_sensor
from nova_jobs.deadletter.kafka_io import read_topics
from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC, build_message
from nova_jobs.deadletter.replay_sensor import ReplayState
from nova_jobs.feeds.assets import build_feeds_asset
from nova_jobs.lib.cache import MAX_TTL_SECONDS, resolve_ttl, write_many
from nova_jobs.lib.settings import SettingError
from nova_jobs.lib.tags import job_tags
from nova_jobs.resources.redis import RedisResource
from nova_jobs.suggestions.assets import build_suggested_users_asset
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_dev.localstack import ManagedProcess, redis_process
from nova_jobs_tests.conftest import dlq_messages, insert_rows

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
EVENT_COLUMNS = ["event_time", "post_id", "user_id", "event_type"]
# Quick retries instead of 2-16 s backoff: the policy applies the same way.
FAST_RETRIES = dg.RetryPolicy(max_retries=2, delay=0.05)


def url_of(server: ManagedProcess) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def client_of(server: ManagedProcess) -> redis_lib.Redis:
    return redis_lib.Redis(port=server.port, decode_responses=True)


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.fixture
def primary_and_replica(tmp_path: Path):
    """Two real redis-servers, the second a replica of the first (what the old primary is after
    a failover: it answers READONLY to every write)."""
    with redis_process(data_dir=tmp_path / "primary") as primary, redis_process(data_dir=tmp_path / "replica") as replica:
        client_of(replica).execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        wait_until(lambda: client_of(replica).info("replication").get("master_link_status") == "up",
                   "the replica never caught up")
        yield primary, replica


def replicated(primary: ManagedProcess, replica: ManagedProcess, key: str, value: str) -> None:
    client_of(primary).set(key, value)
    wait_until(lambda: client_of(replica).get(key) == value, f"{key} never reached the replica")


def active_users(clickhouse, users=range(1, 6)) -> None:
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(NOW - timedelta(hours=1), 1, u, "view") for u in users])


def step_failure(result: dg.ExecuteInProcessResult):
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    metadata = {key: value.value for key, value in data.user_failure_data.metadata.items()}
    return data, metadata


def run_warmer(clickhouse, redis_url: str, instance, **config):
    config.setdefault("as_of", NOW.isoformat())
    return dg.materialize(
        [build_feeds_asset(FAST_RETRIES)], instance=instance,
        resources={"clickhouse": clickhouse, "redis": RedisResource(url=redis_url)},
        run_config={"ops": {"cache__feeds": {"config": config}}}, raise_on_error=False,
    )


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])


def test_write_many_on_a_replica_counts_every_key_as_a_transient_rejection(primary_and_replica):
    _, replica = primary_and_replica
    result = write_many(client_of(replica), [(f"nova:test:{i}", "v") for i in range(30)], ttl_seconds=60)
    assert (result.written, result.failed) == (0, 30)
    assert (result.kind, result.error_class) == ("transient", "ReadOnlyError")
    assert result.rejections["ReadOnlyError"].count == 30


def test_cache_warmer_on_a_read_only_replica_fails_transient_and_keeps_the_feeds(clickhouse, primary_and_replica):
    primary, replica = primary_and_replica
    active_users(clickhouse)
    replicated(primary, replica, "nova:cache:trending:24h", json.dumps([{"post_id": 1, "score": 1.0}]))
    replicated(primary, replica, "nova:cache:feed:1", "previous")
    with dg.instance_for_test() as instance:
        result = run_warmer(clickhouse, url_of(replica), instance)
        assert not result.success
        data, metadata = step_failure(result)
        message = build_message(instance, instance.get_run_by_id(result.run_id))

    # The retry policy applied, then the DLQ message says transient.
    assert retries_of(result) == FAST_RETRIES.max_retries
    assert "Exceeded max_retries" in data.error.message
    assert (metadata["error_kind"], metadata["error_class"]) == ("transient", "ReadOnlyError")
    assert (metadata["keys_written"], metadata["failed"], metadata["tolerated"]) == (0, 5, 0)
    assert (message.kind, message.error_class) == ("transient", "ReadOnlyError")
    assert "Redis rejected 5 of 5 keys" in message.error
    assert client_of(replica).get("nova:cache:feed:1") == "previous"


def test_redis_out_of_memory_fails_the_run_and_keeps_the_previous_values(clickhouse, tmp_path):
    with redis_process(data_dir=tmp_path) as server:
        client = client_of(server)
        client.set("nova:cache:trending:24h", json.dumps([{"post_id": 1, "score": 1.0}]))
        client.set("nova:cache:feed:2", "previous")
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # every write is now over the limit
        active_users(clickhouse)
        with dg.instance_for_test() as instance:
            result = run_warmer(clickhouse, url_of(server), instance)
        assert not result.success
        _, metadata = step_failure(result)
        assert (metadata["error_kind"], metadata["error_class"]) == ("transient", "OutOfMemoryError")
        assert retries_of(result) == FAST_RETRIES.max_retries
        assert metadata["failed"] == 5
        assert client.get("nova:cache:feed:2") == "previous"


def test_suggestion_keys_denied_fail_the_shard_unless_cache_max_failed_keys_tolerates_them(
    clickhouse, redis_client, redis_url, monkeypatch
):
    """An ACL denies user 3's key: the shard fails for good by default; CACHE_MAX_FAILED_KEYS=1
    lets the run pass and the metadata counts the tolerated key."""
    active_users(clickhouse)
    insert_rows(clickhouse, "follows", ["follower_id", "followee_id", "created_at"],
                [(u, 9, NOW - timedelta(days=1)) for u in range(1, 6)])
    name, password = f"suggest_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    allowed = [f"~nova:cache:suggested_users:{u}" for u in range(1, 6) if u != 3]
    redis_client.execute_command("ACL", "SETUSER", name, "on", f">{password}", *allowed, "+@all")
    port = redis_lib.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    resources = {"clickhouse": clickhouse, "redis": RedisResource(url=f"redis://{name}:{password}@127.0.0.1:{port}/0")}
    run_config = {"ops": {"cache__suggested_users": {"config": {"as_of": NOW.isoformat()}}}}
    try:
        with dg.instance_for_test() as instance:
            failed = dg.materialize([build_suggested_users_asset(1)], instance=instance, resources=resources,
                                    run_config=run_config, raise_on_error=False)
            monkeypatch.setenv("CACHE_MAX_FAILED_KEYS", "1")
            passed = dg.materialize([build_suggested_users_asset(1)], instance=instance, resources=resources,
                                    run_config=run_config, raise_on_error=False)
    finally:
        redis_client.execute_command("ACL", "DELUSER", name)

    assert not failed.success
    data, metadata = step_failure(failed)
    assert (metadata["error_kind"], metadata["error_class"]) == ("permanent", "NoPermissionError")
    assert "Redis rejected 1 of 5 keys" in data.error.message
    assert password not in data.error.message
    assert retries_of(failed) == 0

    assert passed.success
    summary = passed.asset_materializations_for_node("cache__suggested_users")[0].metadata
    assert (summary["keys_written"].value, summary["failed"].value, summary["tolerated"].value) == (4, 1, 1)
    assert redis_client.get("nova:cache:suggested_users:3") is None


def test_a_ttl_redis_would_refuse_is_rejected_at_launch(clickhouse, redis_client, redis_url, monkeypatch):
    """10**19 passes as a whole number, but Redis refuses it for every key: the run must fail
    before writing, for good, naming the setting."""
    active_users(clickhouse)
    redis_client.set("nova:cache:trending:24h", json.dumps([{"post_id": 1, "score": 1.0}]))
    redis_client.set("nova:cache:feed:1", "previous")
    monkeypatch.setenv("FEED_TTL_SEC", str(10**19))
    with dg.instance_for_test() as instance:
        result = run_warmer(clickhouse, redis_url, instance)
        assert not result.success
        data, metadata = step_failure(result)
        message = build_message(instance, instance.get_run_by_id(result.run_id))
    assert "FEED_TTL_SEC" in data.error.message
    assert (metadata["error_kind"], metadata["error_class"]) == ("permanent", "SettingError")
    assert (message.kind, message.error_class) == ("permanent", "SettingError")
    assert retries_of(result) == 0
    assert redis_client.get("nova:cache:feed:1") == "previous"
    assert redis_client.keys("nova:cache:feed:*") == ["nova:cache:feed:1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ttl=st.one_of(st.integers(-10, 10), st.integers(MAX_TTL_SECONDS - 5, MAX_TTL_SECONDS + 5),
                  st.integers(min_value=-(2**70), max_value=2**70)),
    jitter=st.one_of(st.integers(-2, 20), st.integers(min_value=-(2**66), max_value=2**66)),
)
def test_every_ttl_setting_is_either_refused_by_name_or_accepted_by_redis(redis_client, ttl, jitter):
    try:
        accepted_ttl, accepted_jitter = resolve_ttl("FEED_TTL_SEC", ttl, 120, "FEED_TTL_JITTER_SEC", jitter, 10)
    except SettingError as error:
        # Given as run config, the values are named by their fields (or the pair's settings).
        assert any(name in str(error) for name in ("run config ttl_seconds=", "run config ttl_jitter_seconds=",
                                                    "FEED_TTL_SEC=")), str(error)
        return
    longest = accepted_ttl + accepted_jitter
    result = write_many(redis_client, [("nova:test:ttl", "v")], ttl_seconds=accepted_ttl, jitter_seconds=accepted_jitter)
    assert (result.written, result.failed) == (1, 0)
    assert accepted_ttl - 2 <= redis_client.ttl("nova:test:ttl") <= longest


def test_cache_max_failed_keys_must_be_a_count(clickhouse, redis_url, monkeypatch):
    monkeypatch.setenv("CACHE_MAX_FAILED_KEYS", "-1")
    with dg.instance_for_test() as instance:
        result = run_warmer(clickhouse, redis_url, instance)
    data, metadata = step_failure(result)
    assert "CACHE_MAX_FAILED_KEYS=-1 must be at least 0" in data.error.message
    assert metadata["error_kind"] == "permanent"


def test_failover_dead_letter_and_replay_restore_the_cache_once(
    clickhouse, primary_and_replica, kafka_resource, monkeypatch
):
    """trending_1h writes to the old primary, now a replica: READONLY on every attempt, so the
    run fails transient after its retries and reaches the DLQ; once the replica is promoted the
    replay sensor launches one replay, which restores the cache."""
    primary, replica = primary_and_replica
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    asset = trending_assets.build_trending_asset(WINDOWS["1h"], FAST_RETRIES)
    job = dg.define_asset_job("trending_1h", selection=[asset.key], tags=job_tags("trending_1h"))
    defs = dg.Definitions.merge(
        dg.Definitions(assets=[asset], jobs=[job], resources={
            "clickhouse": clickhouse, "redis": RedisResource(url=url_of(replica)), "kafka": kafka_resource}),
        dead_letter_defs([job]),
    )
    replicated(primary, replica, "nova:cache:trending:1h", "previous")
    _, offsets = read_topics(kafka_resource, [DLQ_TOPIC, CONTROL_TOPIC], max_records=100_000)
    replay_cursor = ReplayState(offsets=offsets).dump()

    def sensor_context(cursor=None):
        return dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                       resources={"kafka": kafka_resource})

    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}}
    ) as instance:
        failed = defs.resolve_job_def("trending_1h").execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        retries = [e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert len(retries) == FAST_RETRIES.max_retries
        dlq_failure_sensor(sensor_context())
        [message] = dlq_messages(kafka_resource, {failed.run_id})
        assert (message["kind"], message["error_class"], message["retry_count"]) == (
            "transient", "ReadOnlyError", FAST_RETRIES.max_retries)
        assert client_of(replica).get("nova:cache:trending:1h") == "previous"

        client_of(replica).execute_command("REPLICAOF", "NO", "ONE")
        replay_sensor = defs.resolve_sensor_def("dlq_replay_sensor")
        tick = replay_sensor(sensor_context(replay_cursor))
        [request] = tick.run_requests
        assert request.tags["nova/replay_of"] == failed.run_id
        replay = defs.resolve_job_def("trending_1h").execute_in_process(
            instance=instance, run_config=request.run_config, tags={**request.tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )
        assert replay.success
        assert client_of(replica).get("nova:cache:trending:1h") == "[]"
        meta = json.loads(client_of(replica).get("nova:cache:trending:1h:meta"))
        assert meta["run_id"] == replay.run_id

        again = replay_sensor(sensor_context(tick.cursor))
        assert again.run_requests == []
        assert instance.get_runs_count(dg.RunsFilter(tags={"nova/replay_of": failed.run_id})) == 1
