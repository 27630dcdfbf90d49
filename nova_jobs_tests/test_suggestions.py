"""Suggested users against a real embedded ClickHouse and a real redis-server."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from nova_jobs.suggestions.assets import build_suggested_users_asset
from nova_jobs_tests.conftest import cached_json, insert_rows, materialize_with_metadata

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
FOLLOW_COLUMNS = ["follower_id", "followee_id", "created_at"]
BLOCK_COLUMNS = ["blocker_id", "blocked_id", "created_at"]
EVENT_COLUMNS = ["event_time", "post_id", "user_id", "event_type"]
NODE = "cache__suggested_users"


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def run_suggestions(clickhouse, redis_resource, shards=2, **config):
    config.setdefault("as_of", NOW.isoformat())
    with dg.instance_for_test() as instance:
        return materialize_with_metadata(
            [build_suggested_users_asset(shards)], NODE,
            {"clickhouse": clickhouse, "redis": redis_resource}, config, instance=instance,
        )


def suggestions(redis_client, user_id):
    return cached_json(redis_client, f"nova:cache:suggested_users:{user_id}")


def compact(items):
    return [(item["user_id"], item["score"], item["reason"]) for item in items]


@pytest.fixture
def hand_graph(clickhouse):
    """Users 1, 2 and 12 are active. Follower counts: 10 has 4; 5 and 11 have 3; 3, 6, 9 have 2;
    1, 2, 4, 7, 8 have 1. Blocks: 1 blocks 8, 7 blocks 1, 10 blocks 12."""
    follows = [
        (1, 2, ago(300)), (1, 3, ago(200)), (1, 4, ago(100)),  # 4 is 1's most recent follow
        (2, 5, ago(50)), (2, 6, ago(50)), (2, 9, ago(50)), (2, 1, ago(50)),
        (3, 5, ago(50)), (3, 6, ago(50)), (3, 9, ago(50)), (3, 7, ago(50)),
        (4, 5, ago(50)), (4, 8, ago(50)), (4, 3, ago(50)),
        (20, 10, ago(50)), (21, 10, ago(50)), (22, 10, ago(50)), (23, 10, ago(50)),
        (20, 11, ago(50)), (21, 11, ago(50)), (22, 11, ago(50)),
    ]
    insert_rows(clickhouse, "follows", FOLLOW_COLUMNS, follows)
    insert_rows(clickhouse, "user_blocks", BLOCK_COLUMNS, [(1, 8, ago(10)), (7, 1, ago(10)), (10, 12, ago(10))])
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [
        (ago(5), 100, 1, "view"),
        (NOW - timedelta(days=7), 100, 2, "like"),  # exactly at the window's start: active
        (ago(1), 100, 12, "impression"),  # any event type makes a user active
        (NOW - timedelta(days=7, seconds=1), 100, 3, "like"),  # just before the window
        (NOW + timedelta(minutes=1), 100, 4, "like"),  # after now
    ])
    return clickhouse


def test_mutual_counts_exclusions_ties_and_popular_fill(hand_graph, redis_resource, redis_client):
    result, metadata = run_suggestions(hand_graph, redis_resource)
    assert result.success

    # 5 is followed by all three of 1's followees, 6 and 9 by two (tie: lower id first). 7 and
    # 8 are blocked (each direction), 3 is already followed, 1 is themself. The fill is the
    # most-followed people not excluded and not listed: 10, then 11.
    assert compact(suggestions(redis_client, 1)) == [
        (5, 3, "mutual"), (6, 2, "mutual"), (9, 2, "mutual"), (10, 0, "popular"), (11, 0, "popular"),
    ]
    # 2 follows 1, whose other followees 3 and 4 tie at one mutual; the fill skips 2's followees.
    assert compact(suggestions(redis_client, 2)) == [
        (3, 1, "mutual"), (4, 1, "mutual"), (10, 0, "popular"), (11, 0, "popular"), (7, 0, "popular"),
        (8, 0, "popular"),
    ]
    # 12 follows nobody: all popular, by follower count then id, without 10 (who blocks 12).
    assert [item["user_id"] for item in suggestions(redis_client, 12)] == [5, 11, 3, 6, 9, 1, 2, 4, 7, 8]
    assert {item["score"] for item in suggestions(redis_client, 12)} == {0}

    # Inactive users (an event too old, or after now) get nothing.
    assert suggestions(redis_client, 3) is None
    assert suggestions(redis_client, 4) is None
    assert 86_000 < redis_client.ttl("nova:cache:suggested_users:1") <= 86_400

    assert metadata["users"] == 3
    assert metadata["dagster/row_count"] == metadata["items_processed"] == 3
    assert metadata["mutual_suggestions"] == 5
    assert metadata["popular_fill"] == 2 + 4 + 10
    assert metadata["short_lists"] == 3
    assert metadata["failed"] == 0


def test_list_length_is_a_setting(hand_graph, redis_resource, redis_client):
    assert run_suggestions(hand_graph, redis_resource, per_user=4)[0].success
    assert compact(suggestions(redis_client, 1)) == [
        (5, 3, "mutual"), (6, 2, "mutual"), (9, 2, "mutual"), (10, 0, "popular"),
    ]
    assert run_suggestions(hand_graph, redis_resource, per_user=2)[0].success
    assert compact(suggestions(redis_client, 1)) == [(5, 3, "mutual"), (6, 2, "mutual")]


def test_fan_out_cap_considers_the_most_recent_followees(hand_graph, redis_resource, redis_client):
    # Only 1's most recent follow (4) is an intermediary: 5 with one mutual, 8 blocked, 3 followed.
    assert run_suggestions(hand_graph, redis_resource, max_followees=1, per_user=5)[0].success
    assert compact(suggestions(redis_client, 1)) == [
        (5, 1, "mutual"), (10, 0, "popular"), (11, 0, "popular"), (6, 0, "popular"), (9, 0, "popular"),
    ]
    # Each intermediary contributes its single most recent followee (ties: lowest id): 2 -> 1
    # (self), 3 -> 5, 4 -> 3 (followed).
    assert run_suggestions(hand_graph, redis_resource, max_per_followee=1, per_user=2)[0].success
    assert compact(suggestions(redis_client, 1)) == [(5, 1, "mutual"), (10, 0, "popular")]


def reference(follows, blocks, active, per_user):
    """The contract's definition, written the obvious way."""
    followees: dict[int, set[int]] = {}
    for a, b in follows:
        followees.setdefault(a, set()).add(b)
    blocked = {(a, b) for a, b in blocks} | {(b, a) for a, b in blocks}
    popularity = Counter(b for _, b in follows)
    popular = sorted(popularity, key=lambda user: (-popularity[user], user))
    expected = {}
    for user in active:
        mine = followees.get(user, set())

        def allowed(candidate):
            return candidate != user and candidate not in mine and (user, candidate) not in blocked

        scores = Counter(c for v in mine for c in followees.get(v, ()) if allowed(c))
        picks = sorted(scores, key=lambda c: (-scores[c], c))[:per_user]
        items = [(c, scores[c], "mutual") for c in picks]
        for candidate in popular:
            if len(items) >= per_user:
                break
            if allowed(candidate) and candidate not in picks:
                items.append((candidate, 0, "popular"))
        expected[user] = items
    return expected


def test_matches_the_contract_on_a_random_graph_in_every_shard(clickhouse, redis_resource, redis_client):
    rng = random.Random(3)
    users = range(1, 81)
    follows = {(a, b) for a in users for b in rng.sample(users, rng.randint(0, 12)) if a != b}
    blocks = {(rng.choice(users), rng.choice(users)) for _ in range(25)}
    active = set(rng.sample(users, 50))
    insert_rows(clickhouse, "follows", FOLLOW_COLUMNS, [(a, b, ago(rng.randint(1, 10_000))) for a, b in follows])
    insert_rows(clickhouse, "user_blocks", BLOCK_COLUMNS, [(a, b, ago(5)) for a, b in blocks])
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(ago(rng.randint(0, 9000)), 1, u, "view") for u in active])

    result, metadata = run_suggestions(clickhouse, redis_resource, shards=3, per_user=7, users_per_query=10)
    assert result.success
    expected = reference(follows, blocks, active, 7)
    assert {user: compact(suggestions(redis_client, user)) for user in active} == expected
    assert len(redis_client.keys("nova:cache:suggested_users:*")) == len(active)
    assert metadata["users"] == metadata["keys_written"] == len(active)
    assert metadata["shards"] == 3


def test_bad_setting_fails_without_retry_naming_it(hand_graph, redis_resource, redis_client, monkeypatch):
    monkeypatch.setenv("SUGGESTION_MAX_FOLLOWEES", "lots")
    result, _ = run_suggestions(hand_graph, redis_resource)
    assert not result.success
    assert "SUGGESTION_MAX_FOLLOWEES" in str(result.all_events)
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []
    assert redis_client.keys("nova:cache:suggested_users:*") == []
