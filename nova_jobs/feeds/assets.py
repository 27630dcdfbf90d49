"""Warmed feeds: the first screen of the home feed, ready in Redis for Nova's most active users."""

import json

import dagster as dg
from pydantic import Field

from nova_jobs.executors import restricted_k8s_config

from nova_jobs.feeds.compute import warm_feeds
from nova_jobs.feeds.queries import FEED_KEY_PREFIX, FEED_SIZE
from nova_jobs.lib.cache import BulkWriteResult, check_rejected_writes, resolve_max_failed_keys, resolve_ttl
from nova_jobs.lib.errors import reraise_classified
from nova_jobs.lib.retries import NOVA_RETRY_POLICY
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs.lib.asset_jobs import pool_for
from nova_jobs.lib.jobs import scheduled_job
from nova_jobs.lib.timing import iso_z, parse_as_of
from nova_jobs.lib.cache_checks import (
    CacheCheckSpec,
    KeySample,
    content_check_results,
    content_check_specs,
    without_freshness_checks,
)
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.warehouse.active_users import resolve_active_days

FEEDS_KEY = dg.AssetKey(["cache", "feeds"])
FEEDS_CHECKS = CacheCheckSpec(
    FEEDS_KEY, "cache_warmer", f"{FEED_KEY_PREFIX}*", "post_id", lambda: FEED_SIZE,
    reason_order=("followed", "trending"), ranked_reasons=("followed", "trending"),
)

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


def build_feeds_asset(retry_policy: dg.RetryPolicy = NOVA_RETRY_POLICY) -> dg.AssetsDefinition:
    """The cache warmer asset; tests pass a quick retry policy instead of 2-16 s backoff."""

    @dg.asset(
        key=FEEDS_KEY,
        group_name="feeds",
        kinds={"clickhouse", "redis"},
        owners=["team:nova-jobs"],
        retry_policy=retry_policy,
        pool=pool_for("cache_warmer"),
        op_tags={"dagster-k8s/config": FEED_K8S_CONFIG},
        metadata={"redis_key_pattern": FEED_KEY_PREFIX + "{user_id}", "feed_size": FEED_SIZE},
        check_specs=content_check_specs(FEEDS_CHECKS),
        description=(
            "The first screen of the home feed for Nova's most active users, ready in "
            f"`{FEED_KEY_PREFIX}{{user_id}}` so their app opens instantly: the best recent posts "
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
        try:
            target_users = setting_int("FEED_TARGET_USERS", config.target_users, 1000, minimum=1, maximum=10_000_000,
                                       field="target_users")
            ttl, jitter = resolve_ttl("FEED_TTL_SEC", config.ttl_seconds, 120,
                                      "FEED_TTL_JITTER_SEC", config.ttl_jitter_seconds, 10)
            max_failed_keys = resolve_max_failed_keys(config.max_failed_keys)
            active_days = resolve_active_days(config.active_days)
            now = parse_as_of(config.as_of)
            database = clickhouse.database_name
        except SettingError as error:
            reraise_classified(error, "bad cache warmer configuration")

        writes = BulkWriteResult()
        sample = KeySample(FEEDS_CHECKS)
        try:
            with clickhouse.get_client() as client:
                stats = warm_feeds(client, redis.get_client(), database, now, active_days, target_users, ttl, jitter,
                                   writes, observe=sample)
        except Exception as error:  # noqa: BLE001 - classified: transient retries, permanent fails
            reraise_classified(error, f"cache warmer on {clickhouse.display_url}")

        stats.tolerated = check_rejected_writes(
            writes, max_failed_keys, f"cache warmer on {redis.display_url}", metadata=stats.as_metadata()
        )
        if stats.failed:
            context.log.warning(f"{stats.failed} feeds not written (tolerated, the others were): {writes.errors[:5]}")
        context.log.info(f"cache warmer as of {iso_z(now)}: {stats.as_metadata()}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.warmed,
                "items_processed": stats.warmed,
                **stats.as_metadata(),
                "keys_written": writes.written,
                "target_users_setting": target_users,
                "ttl_seconds": ttl,
                "ttl_jitter_seconds": jitter,
                "max_failed_keys": max_failed_keys,
                "as_of": iso_z(now),
            },
            check_results=content_check_results(FEEDS_CHECKS, sample.pairs),
        )

    return feeds


feeds = build_feeds_asset()


cache_warmer_job, cache_warmer_schedule = scheduled_job(
    "cache_warmer",
    without_freshness_checks(FEEDS_KEY),
    "* * * * *",
    "Refresh nova:cache:feed:{user_id} for the most active users.",
    # The run pod does the work (one step): it gets the step's resources.
    extra_tags={"dagster-k8s/config": json.dumps(FEED_K8S_CONFIG)},
)
