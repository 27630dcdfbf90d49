"""The warmer's query plan against the plain formulation of the feed contract (the one `make
bench` measures it against), on random small graphs in a real embedded ClickHouse."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nova_jobs.feeds.queries import FEEDS_SQL, feed_params
from nova_jobs.warehouse.active_users import active_window
from nova_jobs_dev.bench_plain import FEEDS_SQL as PLAIN_FEEDS_SQL
from nova_jobs_dev.bench_plain import differing_keys, same_items

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
USERS = st.integers(1, 12)
TYPES = st.sampled_from(["view", "like", "comment", "share", "impression"])


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


graphs = st.fixed_dictionaries({
    "follows": st.sets(st.tuples(USERS, USERS).filter(lambda pair: pair[0] != pair[1]), max_size=40),
    "blocks": st.sets(st.tuples(USERS, USERS).filter(lambda pair: pair[0] != pair[1]), max_size=6),
    # (author, hours ago): some older than the 48 h window, some in the future of `now`.
    "posts": st.lists(st.tuples(USERS, st.sampled_from([-1, 0, 1, 5, 5, 20, 47.5, 48, 49, 70])), max_size=25),
    # (post index, user, type, hours ago)
    "events": st.lists(st.tuples(st.integers(0, 24), USERS, TYPES, st.sampled_from([-2, 0, 0.5, 3, 30, 100, 200])),
                       max_size=60),
    "target_users": st.integers(1, 12),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graphs)
def test_the_feed_query_gives_the_plain_formulations_values(clickhouse, graph):
    database = clickhouse.database_name
    with clickhouse.get_client() as client:
        for table in ("follows", "user_blocks", "posts", "post_events"):
            client.command(f"TRUNCATE TABLE {database}.{table}")
        client.insert(f"{database}.follows", [[f, e, hours_ago(1000)] for f, e in graph["follows"]],
                      column_names=["follower_id", "followee_id", "created_at"])
        client.insert(f"{database}.user_blocks", [[a, b, hours_ago(1000)] for a, b in graph["blocks"]],
                      column_names=["blocker_id", "blocked_id", "created_at"])
        posts = [[100 + index, author, hours_ago(age)] for index, (author, age) in enumerate(graph["posts"])]
        client.insert(f"{database}.posts", posts, column_names=["post_id", "author_id", "created_at"])
        client.insert(f"{database}.post_events", [[hours_ago(age), 100 + post, user, kind]
                                                  for post, user, kind, age in graph["events"]],
                      column_names=["event_time", "post_id", "user_id", "event_type"])

        params = feed_params(database, NOW, active_window(NOW, 7)["active_start"], graph["target_users"])
        job = {key: value for key, followed, value in client.query(FEEDS_SQL, parameters=params).result_rows if followed}
        plain = [(key, value) for key, _, value in client.query(PLAIN_FEEDS_SQL, parameters=params).result_rows]

    assert sorted(job) == sorted(key for key, _ in plain)
    assert differing_keys(plain, job) == []
    for value in job.values():
        items = json.loads(value)
        assert 0 < len(items) <= 50 and all(item["reason"] == "followed" for item in items)


def test_same_items_tells_a_reordered_or_changed_list_apart():
    a = [{"post_id": 1, "author_id": 2, "score": 3.0}, {"post_id": 4, "author_id": 2, "score": 1.0}]
    assert same_items(a, [dict(item) for item in a])
    assert same_items(a, [{**a[0], "score": 3.0 * (1 + 1e-12)}, a[1]])  # the last bits of a float sum
    assert not same_items(a, list(reversed(a)))
    assert not same_items(a, [a[0], {**a[1], "author_id": 3}])
    assert not same_items(a, a[:1])
    assert differing_keys([("k", json.dumps(a))], {}) == ["k"]
