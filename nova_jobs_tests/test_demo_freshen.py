"""A reused demo data set is moved to "now" on start, so a day-old `make dev` still trends."""

from datetime import UTC, datetime, timedelta

import pytest

from nova_jobs_dev.demo.freshen import event_span, shift_to_now
from nova_jobs_tests.conftest import insert_rows

pytestmark = pytest.mark.integration

LOADED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def rows(clickhouse, sql):
    with clickhouse.get_client() as client:
        return client.query(sql, parameters={"db": clickhouse.database_name}).result_rows


def test_a_day_old_demo_is_shifted_whole_so_its_newest_event_is_now(clickhouse):
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"],
                [(1, 9, LOADED - timedelta(hours=30)), (2, 9, LOADED - timedelta(hours=2))])
    insert_rows(clickhouse, "post_events", ["event_time", "post_id", "user_id", "event_type"], [
        (LOADED - timedelta(hours=20), 1, 1, "like"),
        (LOADED - timedelta(minutes=10), 2, 1, "share"),
        (LOADED, 2, 2, "view"),
    ])
    insert_rows(clickhouse, "follows", ["follower_id", "followee_id", "created_at"], [(1, 9, LOADED - timedelta(days=3))])
    now = LOADED + timedelta(days=1, minutes=7)
    with clickhouse.get_client() as client:
        assert shift_to_now(client, clickhouse.database_name, now) == int((now - LOADED).total_seconds())
        span = event_span(client, clickhouse.database_name)
    delta = now - LOADED
    assert span.last == now and span.first == LOADED - timedelta(hours=20) + delta
    events = sorted((t.replace(tzinfo=UTC), p, u, e) for t, p, u, e in rows(
        clickhouse, "SELECT event_time, post_id, user_id, event_type FROM {db:Identifier}.post_events"))
    assert events == [(LOADED - timedelta(hours=20) + delta, 1, 1, "like"),
                      (LOADED - timedelta(minutes=10) + delta, 2, 1, "share"), (now, 2, 2, "view")]
    posts = sorted((p, t.replace(tzinfo=UTC)) for p, t in rows(
        clickhouse, "SELECT post_id, created_at FROM {db:Identifier}.posts"))
    assert posts == [(1, LOADED - timedelta(hours=30) + delta), (2, LOADED - timedelta(hours=2) + delta)]
    [(follow_time,)] = rows(clickhouse, "SELECT created_at FROM {db:Identifier}.follows")
    assert follow_time.replace(tzinfo=UTC) == LOADED - timedelta(days=3) + delta
    assert span.hours() == "2026-11-20-16:00 .. 2026-11-21-12:00"

    # A restart minutes later, or an empty store, leaves everything where it is.
    with clickhouse.get_client() as client:
        assert shift_to_now(client, clickhouse.database_name, now + timedelta(minutes=1)) == 0
        assert event_span(client, clickhouse.database_name).last == now
        client.command(f"TRUNCATE TABLE {clickhouse.database_name}.post_events")
        assert shift_to_now(client, clickhouse.database_name, now + timedelta(days=2)) == 0
