"""The hourly trending history: partitions as of the end of each hour, idempotent re-runs."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from nova_jobs.trending.history import trending_history
from nova_jobs_tests.conftest import insert_rows

pytestmark = pytest.mark.integration

# How an analyst reads the history: the newest version of each (window, as_of) snapshot.
LATEST_SNAPSHOTS_SQL = """
SELECT window, as_of, rank, post_id, score, scoring
FROM {db:Identifier}.trending_history
WHERE (window, as_of, version) IN (
    SELECT window, as_of, max(version) FROM {db:Identifier}.trending_history GROUP BY window, as_of
)
"""

HOUR_10 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # partition "2026-11-28-10:00" ends at 11:00


def materialize_hour(clickhouse, partition_key, **config):
    return dg.materialize(
        [trending_history],
        partition_key=partition_key,
        resources={"clickhouse": clickhouse},
        run_config={"ops": {"warehouse__trending_history": {"config": config}}} if config else None,
    )


def history_rows(clickhouse, sql="SELECT window, as_of, rank, post_id FROM {db:Identifier}.trending_history"):
    with clickhouse.get_client() as client:
        return client.query(sql, parameters={"db": clickhouse.database_name}).result_rows


def test_backfill_two_hours_then_rerun_one_replaces_it(clickhouse):
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"], [(1, 9, HOUR_10), (2, 9, HOUR_10)])
    insert_rows(clickhouse, "post_events", ["event_time", "post_id", "user_id", "event_type"], [
        (HOUR_10 + timedelta(minutes=30), 1, 1, "like"),  # in hour 10 only
        (HOUR_10 + timedelta(minutes=90), 2, 1, "share"),  # in hour 11 only
        (HOUR_10 + timedelta(minutes=95), 2, 2, "view"),
    ])
    assert materialize_hour(clickhouse, "2026-11-28-10:00").success
    assert materialize_hour(clickhouse, "2026-11-28-11:00").success

    rows = history_rows(clickhouse)
    by_hour = {}
    for window, as_of, rank, post_id in rows:
        by_hour.setdefault((window, as_of.replace(tzinfo=UTC)), []).append((rank, post_id))
    end_10, end_11 = HOUR_10 + timedelta(hours=1), HOUR_10 + timedelta(hours=2)
    # "now" for a partition is the end of its hour.
    assert sorted(by_hour[("1h", end_10)]) == [(1, 1)]
    assert sorted(by_hour[("1h", end_11)]) == [(1, 2)]
    assert sorted(by_hour[("24h", end_11)]) == [(1, 2), (2, 1)]
    assert {window for window, _ in by_hour} == {"1h", "24h", "7d"}

    # New data arrives late for hour 10; re-running the partition replaces its snapshot.
    insert_rows(clickhouse, "post_events", ["event_time", "post_id", "user_id", "event_type"], [
        (HOUR_10 + timedelta(minutes=40), 2, 3, "share"),
    ])
    assert materialize_hour(clickhouse, "2026-11-28-10:00").success
    latest = history_rows(clickhouse, LATEST_SNAPSHOTS_SQL)
    hour_10_1h = sorted((rank, post_id) for window, as_of, rank, post_id, _, _ in latest
                        if window == "1h" and as_of.replace(tzinfo=UTC) == end_10)
    assert hour_10_1h == [(1, 2), (2, 1)]
    # No duplicates: every (window, as_of, rank) appears once in the table itself.
    duplicates = history_rows(clickhouse, """
        SELECT window, as_of, rank, count() FROM {db:Identifier}.trending_history
        GROUP BY window, as_of, rank HAVING count() > 1""")
    assert duplicates == []
    # The other hour is untouched.
    assert sorted((r, p) for w, a, r, p in history_rows(clickhouse)
                  if w == "1h" and a.replace(tzinfo=UTC) == end_11) == [(1, 2)]


def test_unknown_window_fails_naming_it(clickhouse):
    with pytest.raises(dg.Failure, match="window 'forever'"):
        materialize_hour(clickhouse, "2026-11-28-10:00", windows=["1h", "forever"])


def test_a_multi_hour_run_reports_per_partition_what_that_partition_wrote(clickhouse):
    """A backfill of several hours in one run: each partition's row_count is its own rows."""
    insert_rows(clickhouse, "posts", ["post_id", "author_id", "created_at"], [(p, 9, HOUR_10) for p in (1, 2, 3)])
    insert_rows(clickhouse, "post_events", ["event_time", "post_id", "user_id", "event_type"], [
        (HOUR_10 + timedelta(minutes=30), 1, 1, "like"),  # hour 10: post 1
        (HOUR_10 + timedelta(minutes=70), 2, 1, "share"),  # hour 11: posts 2 and 3
        (HOUR_10 + timedelta(minutes=75), 3, 2, "view"),
    ])
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [trending_history], instance=instance, resources={"clickhouse": clickhouse},
            run_config={"ops": {"warehouse__trending_history": {"config": {"windows": ["1h"]}}}},
            tags={"dagster/asset_partition_range_start": "2026-11-28-10:00",
                  "dagster/asset_partition_range_end": "2026-11-28-11:00"},
        )
        assert result.success
        by_partition = {m.partition: m.metadata for m in result.asset_materializations_for_node("warehouse__trending_history")}
    assert set(by_partition) == {"2026-11-28-10:00", "2026-11-28-11:00"}
    assert by_partition["2026-11-28-10:00"]["dagster/row_count"].value == 1
    assert by_partition["2026-11-28-11:00"]["dagster/row_count"].value == 2
    # What the exporter sums over a run's materializations is what the run wrote, once.
    assert sum(m["items_processed"].value for m in by_partition.values()) == 3
