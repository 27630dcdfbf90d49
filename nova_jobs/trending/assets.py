"""Trending caches: what Nova shows as "trending now", "today" and "this week"."""


import dagster as dg

from nova_jobs.lib.asset_jobs import pool_for
from nova_jobs.lib.cache import dumps, publish_with_meta
from nova_jobs.lib.errors import reraise_classified
from nova_jobs.lib.retries import NOVA_RETRY_POLICY
from nova_jobs.lib.settings import SettingError
from nova_jobs.lib.jobs import scheduled_job
from nova_jobs.lib.timing import Stopwatch, iso_z, parse_as_of
from nova_jobs.lib.cache_checks import (
    CacheCheckSpec,
    content_check_results,
    content_check_specs,
    top_k_setting,
    without_freshness_checks,
)
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


def trending_asset_key(window: TrendingWindow) -> dg.AssetKey:
    return dg.AssetKey(["cache", window.job_name])


def trending_checks(window: TrendingWindow) -> CacheCheckSpec:
    return CacheCheckSpec(trending_asset_key(window), window.job_name, window.redis_key, "post_id", top_k_setting("TRENDING_TOPK", 50))


def build_trending_asset(window: TrendingWindow) -> dg.AssetsDefinition:
    @dg.asset(
        key=trending_asset_key(window),
        group_name="trending",
        kinds={"clickhouse", "redis"},
        owners=["team:nova-jobs"],
        retry_policy=NOVA_RETRY_POLICY,
        pool=pool_for(window.job_name),
        description=(
            f"The {window.name} trending list the Nova API serves from `{window.redis_key}`: the "
            f"top posts by weighted engagement over the last {window.name}, recent engagement "
            f"counting most (decay {window.decay} per hour). Refreshed on `{window.cron}`."
        ),
        metadata={"redis_key": window.redis_key, "window": window.name, "decay": window.decay},
        check_specs=content_check_specs(trending_checks(window)),
    )
    def trending_cache(
        context: dg.AssetExecutionContext,
        config: TrendingConfig,
        clickhouse: ClickHouseResource,
        redis: RedisResource,
    ) -> dg.MaterializeResult:
        watch = Stopwatch()
        try:
            scoring = resolve_scoring(config.scoring)
            top_k = resolve_top_k(window, config.top_k)
            now = parse_as_of(config.as_of)
            database = clickhouse.database_name
        except SettingError as error:
            reraise_classified(error, "bad trending configuration")

        try:
            with clickhouse.get_client() as client:
                with watch.lap("query"):
                    rows, stats = query_trending_with_stats(client, database, window, scoring, now, top_k)
        except Exception as error:  # noqa: BLE001 - classified: transient retries, permanent fails
            reraise_classified(error, f"trending {window.name} query on {clickhouse.display_url}")

        items = [{"post_id": post_id, "score": score} for post_id, score in rows]
        meta = {
            "generated_at": iso_z(now),
            "run_id": context.run_id,
            "count": len(items),
            "scoring": scoring,
        }
        try:
            with watch.lap("write"):
                publish_with_meta(redis.get_client(), window.redis_key, dumps(items), meta)
        except Exception as error:  # noqa: BLE001
            reraise_classified(error, f"writing {window.redis_key} to {redis.display_url}")

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
            check_results=content_check_results(trending_checks(window), [(window.redis_key, dumps(items))]),
        )

    return trending_cache


trending_assets = [build_trending_asset(window) for window in WINDOWS.values()]
TRENDING_CHECKS = [trending_checks(window) for window in WINDOWS.values()]

_jobs_and_schedules = [
    scheduled_job(
        window.job_name,
        without_freshness_checks(trending_asset_key(window)),
        window.cron,
        f"Refresh {window.redis_key}.",
    )
    for window in WINDOWS.values()
]
trending_jobs = [job for job, _ in _jobs_and_schedules]
trending_schedules = [schedule for _, schedule in _jobs_and_schedules]
