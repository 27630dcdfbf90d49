"""Trending caches: what Nova shows as "trending now", "today" and "this week"."""


import dagster as dg

from nova_jobs.lib.cache import dumps, publish_with_meta
from nova_jobs.lib.cache_checks import content_check_results, content_check_specs
from nova_jobs.lib.errors import classified
from nova_jobs.lib.jobs import asset_policies, scheduled_job
from nova_jobs.lib.timing import Stopwatch, iso_z, parse_as_of
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.trending.queries import query_trending_with_stats
from nova_jobs.trending.windows import DEFAULT_TOP_K, WINDOWS, Scoring, TrendingWindow, resolve_scoring, resolve_top_k


class TrendingConfig(dg.Config):
    """Per-run overrides, shown in the launchpad at the contract's values. A field left at that
    value takes its environment variable if set (a deployment's default), else the contract."""

    # At the contract's value, TRENDING_SCORING / TRENDING_TOPK still apply (see windows.py).
    scoring: Scoring = Scoring.decayed
    top_k: int = DEFAULT_TOP_K
    as_of: str | None = None  # ISO-8601 evaluation time; default: when the run computes


def build_trending_asset(window: TrendingWindow, retry_policy: dg.RetryPolicy | None = None) -> dg.AssetsDefinition:
    job = window.job

    @dg.asset(
        **asset_policies(job, retry_policy),
        group_name="trending",
        kinds={"clickhouse", "redis"},
        description=(
            f"The {window.name} trending list the Nova API serves from `{window.redis_key}`: the "
            f"top posts by weighted engagement over the last {window.name}, recent engagement "
            f"counting most (decay {window.decay} per hour). Refreshed on `{job.cron}`."
        ),
        metadata={"redis_key": window.redis_key, "window": window.name, "decay": window.decay},
        check_specs=content_check_specs(job),
    )
    def trending_cache(
        context: dg.AssetExecutionContext,
        config: TrendingConfig,
        clickhouse: ClickHouseResource,
        redis: RedisResource,
    ) -> dg.MaterializeResult:
        watch = Stopwatch()
        with classified("bad trending configuration"):
            scoring = resolve_scoring(config.scoring)
            top_k = resolve_top_k(window, config.top_k)
            now = parse_as_of(config.as_of)
            database = clickhouse.database_name

        with classified(f"trending {window.name} query on {clickhouse.display_url}"):
            with clickhouse.get_client() as client, watch.lap("query"):
                rows, stats = query_trending_with_stats(client, database, window, scoring, now, top_k)

        items = [{"post_id": post_id, "score": score} for post_id, score in rows]
        meta = {
            "generated_at": iso_z(now),
            "run_id": context.run_id,
            "count": len(items),
            "scoring": scoring,
        }
        value = dumps(items)
        with classified(f"writing {window.redis_key} to {redis.display_url}"), watch.lap("write"):
            publish_with_meta(redis.get_client(), window.redis_key, value, meta)

        context.log.info(
            f"trending {window.name}: {len(items)} posts from {stats['events']} events "
            f"({stats['unknown_type_events']} of unknown type ignored), scoring={scoring}, "
            f"as of {iso_z(now)}; query {watch.ms('query')} ms, write {watch.ms('write')} ms"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(items),
                "items_processed": len(items),
                "keys_written": 2,
                "redis_key": window.redis_key,
                "scoring": scoring,
                "top_k": top_k,
                "as_of": iso_z(now),
                "events_in_window": stats["events"],
                "unknown_type_events_ignored": stats["unknown_type_events"],
                "query_ms": watch.ms("query"),
                "write_ms": watch.ms("write"),
                "elapsed_ms": watch.elapsed_ms,
                "top_post_ids": dg.MetadataValue.json([item["post_id"] for item in items[:10]]),
            },
            check_results=content_check_results(job, [(window.redis_key, value)]),
        )

    return trending_cache


trending_assets = [build_trending_asset(window) for window in WINDOWS.values()]

_jobs_and_schedules = [
    scheduled_job(window.job, dg.AssetSelection.assets(window.job.asset_key), f"Refresh {window.redis_key}.")
    for window in WINDOWS.values()
]
trending_jobs = [job for job, _ in _jobs_and_schedules]
trending_schedules = [schedule for _, schedule in _jobs_and_schedules]
