"""Warmed feeds against a real embedded ClickHouse and a real redis-server."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib

from nova_jobs.feeds.assets import feeds
from nova_jobs.resources.redis import RedisResource
from nova_jobs.trending.queries import query_trending
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_tests.conftest import cached_json, insert_rows, materialize_with_metadata

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
EVENT_COLUMNS = ["event_time", "post_id", "user_id", "event_type"]
POST_COLUMNS = ["post_id", "author_id", "created_at"]
NODE = "cache__feeds"


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def run_warmer(clickhouse, redis_resource, **config):
    config.setdefault("as_of", NOW.isoformat())
    return materialize_with_metadata([feeds], NODE, {"clickhouse": clickhouse, "redis": redis_resource}, config)


def feed(redis_client, user_id):
    return cached_json(redis_client, f"nova:cache:feed:{user_id}")


@pytest.fixture
def feed_graph(clickhouse):
    """User 1 follows 2, 3 and 4 and blocks 4; 5 blocks 1. User 6 follows only 7, who never posted."""
    insert_rows(clickhouse, "follows", ["follower_id", "followee_id", "created_at"], [
        (1, 2, hours_ago(500)), (1, 3, hours_ago(500)), (1, 4, hours_ago(500)), (1, 5, hours_ago(500)),
        (6, 7, hours_ago(500)),
    ])
    insert_rows(clickhouse, "user_blocks", ["blocker_id", "blocked_id", "created_at"], [
        (1, 4, hours_ago(10)), (5, 1, hours_ago(10)),
    ])
    insert_rows(clickhouse, "posts", POST_COLUMNS, [
        (10, 2, hours_ago(1)),
        (11, 2, hours_ago(47)),
        (12, 3, hours_ago(49)),  # older than 48 hours
        (13, 4, hours_ago(1)),  # author blocked by 1
        (14, 3, hours_ago(2)),
        (15, 9, hours_ago(1)),  # not followed
        (16, 2, hours_ago(-1)),  # created after now
        (17, 3, hours_ago(1)),  # same age and engagement as 10: post_id breaks the tie
        (18, 5, hours_ago(1)),  # author who blocks 1
        (19, 3, NOW - timedelta(hours=48)),  # exactly 48 hours old: in
    ])
    events = [
        (hours_ago(0.5), 10, 20, "like"), (hours_ago(0.5), 10, 21, "like"), (hours_ago(0.5), 10, 22, "view"),
        (hours_ago(0.5), 10, 23, "impression"),  # unknown type: weight 0
        (hours_ago(0.5), 17, 20, "like"), (hours_ago(0.5), 17, 20, "like"), (hours_ago(0.5), 17, 2, "view"),
        (hours_ago(1), 14, 20, "share"),
        (hours_ago(-0.5), 14, 21, "share"),  # after now: not counted
        (hours_ago(40), 11, 20, "comment"),
        (hours_ago(0.1), 99, 6, "view"), (hours_ago(0.1), 99, 6, "view"),
    ]
    # User 1 is the most active (6 events), then 20 (5), 6 (2), then 2, 21, 22, 23 (1 each).
    events += [(hours_ago(0.1), 99, 1, "view")] * 6
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, events)
    return clickhouse


def test_ranking_blocks_and_window(feed_graph, redis_resource, redis_client):
    redis_client.set("nova:cache:trending:24h", json.dumps([{"post_id": 14, "score": 9.5}]))
    result, metadata = run_warmer(feed_graph, redis_resource)
    assert result.success

    expected = [
        (14, 3, (1 + 5) * 0.95**2),
        (10, 2, (1 + 2 + 2 + 0.1) * 0.95**1),
        (17, 3, (1 + 2 + 2 + 0.1) * 0.95**1),
        (11, 2, (1 + 3) * 0.95**47),
        (19, 3, 1 * 0.95**48),
    ]
    listed = feed(redis_client, 1)
    assert [(i["post_id"], i["author_id"]) for i in listed] == [(p, a) for p, a, _ in expected]
    for item, (_, _, score) in zip(listed, expected):
        assert item["score"] == pytest.approx(score, rel=1e-12)
        assert item["reason"] == "followed"

    # 6's only followee never posted: the 24h trending list, with its author.
    assert feed(redis_client, 6) == [{"post_id": 14, "author_id": 3, "score": 9.5, "reason": "trending"}]

    assert metadata["target_users"] == 7
    assert metadata["warmed"] == metadata["dagster/row_count"] == metadata["items_processed"] == 7
    assert (metadata["followed"], metadata["fallback_trending"], metadata["skipped"], metadata["failed"]) == (1, 6, 0, 0)
    assert metadata["trending_source"] == "redis"
    for name in ("elapsed_ms", "query_ms", "write_ms", "build_ms"):
        assert metadata[name] >= 0


def test_only_the_most_active_users_are_warmed(feed_graph, redis_resource, redis_client):
    result, metadata = run_warmer(feed_graph, redis_resource, target_users=3)
    assert result.success
    assert metadata["target_users"] == 3
    assert sorted(redis_client.keys("nova:cache:feed:*")) == ["nova:cache:feed:1", "nova:cache:feed:20", "nova:cache:feed:6"]


def test_fallback_computes_trending_when_its_cache_is_empty(feed_graph, redis_resource, redis_client, clickhouse):
    result, metadata = run_warmer(feed_graph, redis_resource)
    assert result.success
    assert metadata["trending_source"] == "computed"
    with clickhouse.get_client() as client:
        trending = query_trending(client, clickhouse.database_name, WINDOWS["24h"], "decayed", NOW, 50)
    assert trending, "the fixture has engagement in the last 24 hours"
    fallback = feed(redis_client, 6)
    assert [(item["post_id"], item["score"]) for item in fallback] == [(p, pytest.approx(s)) for p, s in trending]
    assert {item["reason"] for item in fallback} == {"trending"}
    # Post 99 has events but no row in `posts`: its author is unknown, cached as 0.
    authors = {item["post_id"]: item["author_id"] for item in fallback}
    assert authors[99] == 0 and authors[10] == 2


def test_nothing_to_show_caches_an_empty_list(clickhouse, redis_resource, redis_client):
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(NOW - timedelta(days=3), 1, 1, "view")])
    result, metadata = run_warmer(clickhouse, redis_resource)
    assert result.success
    assert feed(redis_client, 1) == []
    assert (metadata["warmed"], metadata["skipped"]) == (0, 1)


def test_ttl_with_jitter(clickhouse, redis_resource, redis_client):
    users = range(1, 41)
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(hours_ago(1), 1, u, "view") for u in users])
    redis_client.set("nova:cache:trending:24h", "[]")
    assert run_warmer(clickhouse, redis_resource, ttl_seconds=120, ttl_jitter_seconds=10)[0].success
    ttls = [redis_client.ttl(f"nova:cache:feed:{u}") for u in users]
    assert all(115 <= ttl <= 130 for ttl in ttls), ttls
    assert len(set(ttls)) > 1, "expiries should be spread by the jitter"
    assert run_warmer(clickhouse, redis_resource, ttl_seconds=600, ttl_jitter_seconds=0)[0].success
    assert {redis_client.ttl(f"nova:cache:feed:{u}") for u in users} <= {599, 600}


def test_a_rejected_key_fails_the_run_unless_tolerated(clickhouse, redis_client, redis_url):
    """A real Redis ACL lets the warmer write every feed key but user 3's: that SET fails in
    the middle of the pipeline, the others land and the counts say so. With no tolerance the
    run fails for good (a missing permission does not pass), naming the count and the class;
    `max_failed_keys=1` lets it pass."""
    users = range(1, 6)
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(hours_ago(1), 1, u, "view") for u in users])
    redis_client.set("nova:cache:trending:24h", json.dumps([{"post_id": 1, "score": 1.0}]))
    redis_client.set("nova:cache:feed:3", "previous")
    name, password = f"warmer_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    allowed = [f"~nova:cache:feed:{u}" for u in users if u != 3]
    redis_client.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~nova:cache:trending:*", *allowed, "+@all")
    try:
        port = redis_lib.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
        restricted = RedisResource(url=f"redis://{name}:{password}@127.0.0.1:{port}/0")
        failed, _ = run_warmer(clickhouse, restricted)
        passed, metadata = run_warmer(clickhouse, restricted, max_failed_keys=1)
    finally:
        redis_client.execute_command("ACL", "DELUSER", name)

    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    assert "Redis rejected 1 of 5 keys" in data.error.message and "NoPermissionError" in data.error.message
    assert password not in data.error.message
    failure_metadata = {key: value.value for key, value in data.user_failure_data.metadata.items()}
    assert failure_metadata["error_kind"] == "permanent"
    assert failure_metadata["error_class"] == "NoPermissionError"
    assert (failure_metadata["keys_written"], failure_metadata["failed"], failure_metadata["tolerated"]) == (4, 1, 0)
    assert len([e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 0

    assert passed.success
    assert (metadata["warmed"], metadata["failed"], metadata["tolerated"], metadata["target_users"]) == (4, 1, 1, 5)
    assert metadata["keys_written"] == 4
    assert redis_client.get("nova:cache:feed:3") == "previous"
    for user in (1, 2, 4, 5):
        assert feed(redis_client, user)[0]["reason"] == "trending"
