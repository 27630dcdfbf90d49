"""Trending history: what was trending at the end of every hour, kept in ClickHouse for
analysts and for backfills after a scoring change."""


import time

import dagster as dg

from nova_jobs.catalog import TRENDING_HISTORY
from nova_jobs.lib.errors import classified
from nova_jobs.lib.jobs import asset_policies
from nova_jobs.lib.tags import job_tags
from nova_jobs.lib.timing import Stopwatch, iso_z
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.trending.queries import query_trending
from nova_jobs.trending.windows import DEFAULT_TOP_K, WINDOWS, Scoring, get_window, resolve_scoring, resolve_top_k
from nova_jobs.warehouse.schema import create_history_table

HISTORY_PARTITIONS = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00", timezone="UTC")


class TrendingHistoryConfig(dg.Config):
    windows: list[str] = list(WINDOWS)
    # At the contract's value, TRENDING_SCORING / TRENDING_TOPK still apply (see windows.py).
    scoring: Scoring = Scoring.decayed
    top_k: int = DEFAULT_TOP_K


@dg.asset(
    **asset_policies(TRENDING_HISTORY),
    group_name="trending",
    kinds={"clickhouse"},
    partitions_def=HISTORY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=24),
    description=(
        "The trending lists as they stood at the end of each hour, per window, in "
        "`trending_history` (read the newest `version` of each (window, as_of)). Re-running an "
        "hour replaces its snapshot."
    ),
)
def trending_history(
    context: dg.AssetExecutionContext, config: TrendingHistoryConfig, clickhouse: ClickHouseResource
) -> dg.MaterializeResult:
    watch = Stopwatch()
    with classified("bad trending history configuration"):
        windows = [get_window(name) for name in config.windows]
        scoring = resolve_scoring(config.scoring)
        database = clickhouse.database_name

    hours = {key: HISTORY_PARTITIONS.time_window_for_partition_key(key) for key in context.partition_keys}
    rows_written = 0
    with classified(f"trending history on {clickhouse.display_url}"), clickhouse.get_client() as client:
        create_history_table(client, database)
        for partition_key, hour in hours.items():
            as_of = hour.end
            # A version newer than any earlier run's marks this run's rows as the snapshot.
            version = time.time_ns()
            rows: list[list] = []
            for window in windows:
                top_k = resolve_top_k(window, config.top_k)
                with watch.lap("query"):
                    ranked = query_trending(client, database, window, scoring, as_of, top_k)
                rows.extend(
                    [window.name, as_of, version, rank, post_id, score, scoring, context.run_id]
                    for rank, (post_id, score) in enumerate(ranked, start=1)
                )
            with watch.lap("write"):
                if rows:
                    client.insert(
                        "trending_history",
                        rows,
                        column_names=["window", "as_of", "version", "rank", "post_id", "score", "scoring", "run_id"],
                        database=database,
                    )
                # Older versions go only after the new one is in: readers never see a gap.
                client.command(
                    "DELETE FROM {db:Identifier}.trending_history "
                    "WHERE as_of = toDateTime({as_of:Int64}, 'UTC') AND window IN {windows:Array(String)} "
                    "AND version < {version:UInt64}",
                    parameters={
                        "db": database,
                        "as_of": int(as_of.timestamp()),
                        "windows": [w.name for w in windows],
                        "version": version,
                    },
                )
            rows_written += len(rows)
            # Each partition reports what it wrote; the run's totals would count every
            # hour of a multi-hour backfill once per partition.
            context.add_asset_metadata(
                {"dagster/row_count": len(rows), "items_processed": len(rows), "as_of": iso_z(as_of)},
                partition_key=partition_key,
            )
            context.log.info(f"trending history as of {iso_z(as_of)}: {len(rows)} rows")

    return dg.MaterializeResult(
        metadata={
            "run_row_count": rows_written,
            "run_hours": len(hours),
            "windows": dg.MetadataValue.json([w.name for w in windows]),
            "scoring": scoring,
            "query_ms": watch.ms("query"),
            "write_ms": watch.ms("write"),
            "elapsed_ms": watch.elapsed_ms,
        }
    )


trending_history_job = dg.define_asset_job(
    name=TRENDING_HISTORY.name,
    selection=dg.AssetSelection.assets(trending_history),
    tags=job_tags(TRENDING_HISTORY.name),
    description="Snapshot the trending lists at the end of each hour into ClickHouse.",
)

# Each hour, a few minutes after it closes, snapshot the hour that just ended.
trending_history_schedule = dg.build_schedule_from_partitioned_job(
    trending_history_job, minute_of_hour=5, default_status=dg.DefaultScheduleStatus.RUNNING
)
