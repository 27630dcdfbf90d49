"""Trending caches against a real embedded ClickHouse and a real redis-server."""

import json
import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from nova_jobs.trending.assets import build_trending_asset
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_tests.conftest import insert_rows

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
EVENT_COLUMNS = ["event_time", "post_id", "user_id", "event_type"]


def at(minutes_before: float) -> datetime:
    return NOW - timedelta(minutes=minutes_before)


def run_trending(window, clickhouse, redis_resource, **config):
    config.setdefault("as_of", NOW.isoformat())
    return dg.materialize(
        [build_trending_asset(WINDOWS[window])],
        resources={"clickhouse": clickhouse, "redis": redis_resource},
        run_config={"ops": {f"cache__trending_{window}": {"config": config}}},
        raise_on_error=False,
    )


@pytest.fixture
def small_graph(clickhouse):
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"], [
        (1, 100, at(600)), (2, 200, at(600)), (4, 400, at(600)), (5, 500, at(600)), (6, 600, at(600)),
    ])
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [
        (at(30), 1, 1, "like"),
        (at(10), 1, 1, "like"),  # same (user, type) pair: counts once, at its latest event
        (at(60), 1, 2, "view"),  # exactly at the window start: outside (now - span, now]
        (at(5), 1, 100, "share"),  # the author's own engagement
        (at(0), 1, 3, "comment"),
        (at(30), 2, 1, "share"),
        (at(20), 2, 4, "impression"),  # unknown type: ignored, counted
        (at(0), 3, 5, "view"),  # post 3 is not in `posts`: no author to exclude
        (at(-1), 3, 6, "like"),  # in the future of `now`
        (at(15), 4, 400, "like"),  # only its author engaged
        (at(45), 5, 7, "like"),
        (at(45), 6, 8, "like"),  # same score as post 5: post_id breaks the tie
    ])
    return clickhouse


def cached(redis_client, window):
    return json.loads(redis_client.get(f"nova:cache:trending:{window}"))


def test_decayed_scores_order_and_exclusions(small_graph, redis_resource, redis_client):
    result = run_trending("1h", small_graph, redis_resource)
    assert result.success

    expected = {
        1: 2 * 0.9 ** (10 / 60) + 3 * 0.9**0,  # like pair once (latest), comment; author's share and the boundary view excluded
        2: 5 * 0.9 ** (30 / 60),
        3: 0.1,
        5: 2 * 0.9 ** (45 / 60),
        6: 2 * 0.9 ** (45 / 60),
    }
    listed = cached(redis_client, "1h")
    assert [item["post_id"] for item in listed] == [1, 2, 5, 6, 3]
    for item in listed:
        assert item["score"] == pytest.approx(expected[item["post_id"]], rel=1e-12)

    meta = json.loads(redis_client.get("nova:cache:trending:1h:meta"))
    assert meta["count"] == 5
    assert meta["scoring"] == "decayed"
    assert meta["run_id"] == result.run_id
    assert datetime.fromisoformat(meta["generated_at"].replace("Z", "+00:00")) == NOW

    metadata = result.asset_materializations_for_node("cache__trending_1h")[0].metadata
    assert metadata["dagster/row_count"].value == 5
    assert metadata["unknown_type_events_ignored"].value == 1
    assert metadata["events_in_window"].value == 10  # the boundary view and the future like are outside


def test_seed_scoring_matches_the_old_worker(small_graph, redis_resource, redis_client):
    result = run_trending("1h", small_graph, redis_resource, scoring="seed")
    assert result.success
    # Raw counts over the window (author included), decayed by whole hours crossed since the
    # post's latest event: 11:30 -> 12:00 crosses one hour boundary, 12:00 -> 12:00 none.
    expected = {
        1: (2 * 2 + 5 * 1 + 3 * 1) * 0.9**0,
        2: 5 * 0.9**1,
        3: 0.1 * 0.9**0,
        4: 2 * 0.9**1,
        5: 2 * 0.9**1,
        6: 2 * 0.9**1,
    }
    listed = cached(redis_client, "1h")
    assert [item["post_id"] for item in listed] == [1, 2, 4, 5, 6, 3]
    for item in listed:
        assert item["score"] == pytest.approx(expected[item["post_id"]], rel=1e-12)
    assert json.loads(redis_client.get("nova:cache:trending:1h:meta"))["scoring"] == "seed"


def test_top_k_and_wider_windows(small_graph, redis_resource, redis_client):
    assert run_trending("24h", small_graph, redis_resource, top_k=2).success
    assert [item["post_id"] for item in cached(redis_client, "24h")] == [1, 2]
    assert run_trending("7d", small_graph, redis_resource).success
    week = cached(redis_client, "7d")
    # The 24h and 7d windows include the view at exactly one hour ago.
    assert week[0]["post_id"] == 1
    assert week[0]["score"] == pytest.approx(2 * 0.98 ** (10 / 60) + 3 + 0.1 * 0.98**1, rel=1e-12)


def test_a_window_of_unknown_types_only_caches_an_empty_list_and_still_counts_them(clickhouse, redis_resource, redis_client):
    # The ranking and the window's counts come from one scan: with nothing to rank, the counts remain.
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(at(10), 1, 1, "impression"), (at(20), 2, 1, "impression")])
    for scoring in ("decayed", "seed"):
        result = run_trending("1h", clickhouse, redis_resource, scoring=scoring)
        assert result.success
        assert cached(redis_client, "1h") == []
        metadata = result.asset_materializations_for_node("cache__trending_1h")[0].metadata
        assert metadata["events_in_window"].value == 2
        assert metadata["unknown_type_events_ignored"].value == 2


def test_empty_window_caches_an_empty_list(clickhouse, redis_resource, redis_client):
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [(at(120), 1, 1, "like")])
    result = run_trending("1h", clickhouse, redis_resource)
    assert result.success
    assert redis_client.get("nova:cache:trending:1h") == "[]"
    assert json.loads(redis_client.get("nova:cache:trending:1h:meta"))["count"] == 0


@pytest.mark.parametrize(
    ("config", "setting"),
    # A bad `scoring` in run config is refused at launch, naming its run-config path
    # (test_ui_launches.py); a bad `top_k` fails the step naming its run-config field.
    [({"top_k": -1}, "run config top_k=-1 must be at least 1")],
)
def test_bad_configuration_fails_at_once_naming_the_setting(clickhouse, redis_resource, redis_client, config, setting):
    result = run_trending("1h", clickhouse, redis_resource, **config)
    assert not result.success
    failure = result.failure_data_for_node("cache__trending_1h")
    assert setting in failure.error.message
    # No retries were attempted for a permanent error.
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == []
    assert redis_client.get("nova:cache:trending:1h") is None


def test_failed_run_leaves_the_previous_cache(small_graph, redis_resource, redis_client, clickhouse):
    assert run_trending("1h", small_graph, redis_resource).success
    before = redis_client.mget("nova:cache:trending:1h", "nova:cache:trending:1h:meta")

    missing_database = type(clickhouse)(url=clickhouse.url, database="no_such_database")
    result = run_trending("1h", missing_database, redis_resource)
    assert not result.success
    assert "no_such_database" in result.failure_data_for_node("cache__trending_1h").error.message
    assert redis_client.mget("nova:cache:trending:1h", "nova:cache:trending:1h:meta") == before


def test_readers_never_see_a_partial_or_mixed_cache(clickhouse, redis_resource, redis_client):
    """A reader polling during refreshes always finds the key, valid sorted JSON, and a
    `:meta` from the same run (its count matches the list)."""
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader():
        while not stop.is_set():
            value, meta = redis_client.mget("nova:cache:trending:1h", "nova:cache:trending:1h:meta")
            if value is None or meta is None:
                if seen:
                    problems.append("key missing during refresh")
                continue
            items, meta = json.loads(value), json.loads(meta)
            scores = [item["score"] for item in items]
            if scores != sorted(scores, reverse=True):
                problems.append("unsorted list")
            if meta["count"] != len(items):
                problems.append(f"list of {len(items)} with meta of run counting {meta['count']}")
            seen.append(len(items))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for run in range(6):
            # Each refresh sees a different number of trending posts.
            insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [
                (at(1), 1000 * run + i, 1, "like") for i in range(1, 2 + 7 * run)
            ])
            assert run_trending("1h", clickhouse, redis_resource, top_k=50).success
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert len(set(seen)) >= 3, "the reader should have observed several refreshes"


def test_every_window_agrees_with_the_plain_formulation_on_messy_random_events(clickhouse, redis_resource, redis_client):
    """3,000 random events over 8 days: unknown types, authors engaging with their own posts,
    posts missing from `posts`, repeated (user, type) pairs, ties in time. Each window's cached
    list is what the contract's plain SQL (written apart, for the bench) gives, and the window's
    counts are what Python counts."""
    import random

    from nova_jobs_dev.bench_plain import TRENDING_SQL, trending_params

    rng = random.Random(13)
    types = ["view", "like", "comment", "share", "impression", "", "Like", "view "]
    posts = [(post_id, rng.randint(1, 40), at(rng.randint(0, 12_000))) for post_id in range(1, 120) if post_id % 7]
    authors = {post_id: author for post_id, author, _ in posts}
    events = []
    for _ in range(3000):
        post_id = rng.randint(1, 130)
        user = authors.get(post_id, 0) if rng.random() < 0.1 else rng.randint(1, 40)
        events.append((at(rng.choice([rng.uniform(-5, 8 * 24 * 60), rng.randint(0, 8 * 24) * 60])), post_id, user,
                       rng.choice(types)))
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"], posts)
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, events)
    for name, window in WINDOWS.items():
        result = run_trending(name, clickhouse, redis_resource)
        assert result.success
        start, now = int((NOW - window.span).timestamp()), int(NOW.timestamp())
        with clickhouse.get_client() as client:
            plain = client.query(TRENDING_SQL, parameters=trending_params(clickhouse.database_name, window, now)).result_rows
        got = cached(redis_client, name)
        assert [item["post_id"] for item in got] == [post_id for post_id, _ in plain], name
        assert [item["score"] for item in got] == pytest.approx([score for _, score in plain], rel=1e-9), name
        in_window = [e for e in events if start < int(e[0].timestamp()) <= now]
        [materialization] = result.asset_materializations_for_node(f"cache__trending_{name}")
        assert materialization.metadata["events_in_window"].value == len(in_window)
        assert materialization.metadata["unknown_type_events_ignored"].value == sum(
            e[3] not in ("view", "like", "comment", "share") for e in in_window)


def test_a_post_listed_twice_in_posts_counts_once(clickhouse, redis_resource, redis_client):
    """The contract says one row per post; a warehouse reload that lists a post twice must not
    double its score, nor let its author count."""
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"],
                [(1, 100, at(600)), (1, 100, at(600)), (2, 200, at(600))])
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [
        (at(10), 1, 1, "like"), (at(10), 1, 100, "share"), (at(10), 2, 1, "like"), (at(10), 2, 200, "share"),
    ])
    assert run_trending("1h", clickhouse, redis_resource).success
    scores = {item["post_id"]: item["score"] for item in cached(redis_client, "1h")}
    assert scores[1] == pytest.approx(scores[2]) == pytest.approx(2 * 0.9 ** (10 / 60))
