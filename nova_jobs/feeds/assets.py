"""Warmed feeds: the first screen of the home feed, ready in Redis for Nova's most active users."""

import json

import dagster as dg
from pydantic import Field

from nova_jobs.catalog import CACHE_WARMER
from nova_jobs.executors import restricted_k8s_config
from nova_jobs.feeds.compute import warm_feeds
from nova_jobs.lib.cache import resolve_max_failed_keys, resolve_ttl, settle_rejected_writes
from nova_jobs.lib.cache_checks import KeySample, content_check_results, content_check_specs
from nova_jobs.lib.errors import classified
from nova_jobs.lib.jobs import asset_policies, scheduled_job
from nova_jobs.lib.settings import setting_int
from nova_jobs.lib.timing import iso_z, parse_as_of
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.warehouse.active_users import resolve_active_days

FEED_K8S_CONFIG = restricted_k8s_config({
    "requests": {"cpu": "1", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
})


class FeedsConfig(dg.Config):
    """Per-run overrides, shown in the launchpad at their defaults. A field left at its default
    takes its environment variable if set (the deployment's value), else that default."""

    target_users: int = Field(1000, description="Most active users to warm (FEED_TARGET_USERS)")
    ttl_seconds: int = Field(120, description="Feed TTL in seconds (FEED_TTL_SEC)")
    ttl_jitter_seconds: int = Field(10, description="Random extra TTL, up to (FEED_TTL_JITTER_SEC)")
    active_days: int = Field(7, description="Active-user window in days (ACTIVE_DAYS)")
    max_failed_keys: int = Field(0, description="Keys Redis may reject before the run fails (CACHE_MAX_FAILED_KEYS)")
    as_of: str | None = Field(None, description="ISO-8601 evaluation time; default: when the run computes")


def build_feeds_asset(retry_policy: dg.RetryPolicy | None = None) -> dg.AssetsDefinition:
    """The cache warmer asset; tests pass a quicker retry policy than the job's."""

    @dg.asset(
        **asset_policies(CACHE_WARMER, retry_policy),
        group_name="feeds",
        kinds={"clickhouse", "redis"},
        op_tags={"dagster-k8s/config": FEED_K8S_CONFIG},
        metadata={"redis_key_pattern": CACHE_WARMER.redis_key, "feed_size": CACHE_WARMER.list_length},
        check_specs=content_check_specs(CACHE_WARMER),
        description=(
            "The first screen of the home feed for Nova's most active users, ready in "
            f"`{CACHE_WARMER.redis_key}` so their app opens instantly: the best recent posts "
            "(last 48 hours) of the people they follow, by engagement and freshness, never from "
            "someone in a block with them; today's trending posts for users with nothing to show. "
            "Refreshed every minute, each feed kept two minutes."
        ),
    )
    def feeds(
        context: dg.AssetExecutionContext,
        config: FeedsConfig,
        clickhouse: ClickHouseResource,
        redis: RedisResource,
    ) -> dg.MaterializeResult:
        with classified("bad cache warmer configuration"):
            target_users = setting_int("FEED_TARGET_USERS", config.target_users, 1000, minimum=1, maximum=10_000_000,
                                       field="target_users")
            ttl, jitter = resolve_ttl("FEED_TTL_SEC", config.ttl_seconds, 120,
                                      "FEED_TTL_JITTER_SEC", config.ttl_jitter_seconds, 10)
            max_failed_keys = resolve_max_failed_keys(config.max_failed_keys)
            active_days = resolve_active_days(config.active_days)
            now = parse_as_of(config.as_of)
            database = clickhouse.database_name

        sample = KeySample()
        with classified(f"cache warmer on {clickhouse.display_url}"), clickhouse.get_client() as client:
            stats = warm_feeds(client, redis.get_client(), database, now, active_days, target_users, ttl, jitter,
                               observe=sample)

        stats.tolerated = settle_rejected_writes(
            stats.writes, max_failed_keys, f"cache warmer on {redis.display_url}", metadata=stats.as_metadata()
        )
        context.log.info(f"cache warmer as of {iso_z(now)}: {stats.as_metadata()}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.warmed,
                "items_processed": stats.warmed,
                **stats.as_metadata(),
                "keys_written": stats.writes.written,
                "target_users_setting": target_users,
                "ttl_seconds": ttl,
                "ttl_jitter_seconds": jitter,
                "max_failed_keys": max_failed_keys,
                "as_of": iso_z(now),
            },
            check_results=content_check_results(CACHE_WARMER, sample.pairs),
        )

    return feeds


feeds = build_feeds_asset()


cache_warmer_job, cache_warmer_schedule = scheduled_job(
    CACHE_WARMER,
    dg.AssetSelection.assets(CACHE_WARMER.asset_key),
    f"Refresh {CACHE_WARMER.redis_key} for the most active users.",
    # The run pod does the work (one step): it gets the step's resources.
    extra_tags={"dagster-k8s/config": json.dumps(FEED_K8S_CONFIG)},
)
