"""Asset checks on what the cache jobs write, as the Nova API reads it.

Every cache asset gets four checks: the value is valid JSON (a list of objects with an id and a
score), it is ranked (score descending, then id ascending), it holds no id twice, and it holds
at most K entries. Caches of one key per user are checked on a sample of keys. The trending and
feed assets declare these checks (`content_check_specs`) and evaluate them in their own step on
the values they have just written (`lib.cache_checks`), so a run is one step; the sharded
suggestions asset has no step that sees every value, so its checks read Redis back in a step of
their own (`build_cache_checks`).

Each cache also gets a freshness check (`observability.freshness`): stale when not updated within
twice its refresh interval, pending until the cache's first materialization. Only its sensor runs it, never the cache job (`lib.cache_checks.without_freshness_checks`): a run per
evaluation that can change the answer, not a step in every refresh.

Adding a cache is one line in CACHE_CHECKS.
"""

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg

from nova_jobs.feeds.assets import FEEDS_CHECKS
from nova_jobs.lib.cache_checks import (
    CHECK_NAMES,
    FRESHNESS_CHECK_NAME,
    CacheCheckSpec,
    Findings,
    check_results,
    content_check_specs,
    inspect_value,
    inspect_values,
    ranking_problem,
    top_k_setting,
)
from nova_jobs.lib.retries import NOVA_RETRY_POLICY
from nova_jobs.observability.freshness import build_freshness_check, build_freshness_sensor
from nova_jobs.observability.jobs import JOB_INTERVALS, STALE_AFTER_INTERVALS
from nova_jobs.resources.redis import RedisResource
from nova_jobs.suggestions.assets import SUGGESTED_USERS_KEY
from nova_jobs.suggestions.queries import SUGGESTED_KEY_PREFIX
from nova_jobs.trending.assets import TRENDING_CHECKS

__all__ = ["CACHE_CHECKS", "CHECK_NAMES", "CacheCheckSpec", "Findings", "inspect_value", "ranking_problem"]

# Trending and feeds declare their specs beside their assets (their step evaluates them).
CACHE_CHECKS: list[CacheCheckSpec] = [
    *TRENDING_CHECKS,
    CacheCheckSpec(SUGGESTED_USERS_KEY, "suggested_users", f"{SUGGESTED_KEY_PREFIX}*", "user_id",
                   top_k_setting("SUGGESTIONS_PER_USER", 20), reason_order=("mutual", "popular"), ranked_reasons=("mutual",)),
    FEEDS_CHECKS,
]


def read_cache(client, spec: CacheCheckSpec) -> Iterator[tuple[str, Any]]:
    if not spec.is_pattern:
        yield spec.key, client.get(spec.key)
        return
    keys = []
    for key in client.scan_iter(match=spec.key, count=1000):
        key = key.decode() if isinstance(key, bytes) else key
        if not key.endswith(":meta"):
            keys.append(key)
        if len(keys) >= spec.sample_keys:
            break
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        yield from zip(chunk, client.mget(chunk))


def build_cache_checks(spec: CacheCheckSpec) -> dg.AssetChecksDefinition:
    """The content checks in a step of their own, reading the values back from Redis."""
    name = "__".join(spec.asset_key.path)

    @dg.multi_asset_check(
        name=f"{name}_contents",
        specs=content_check_specs(spec),
        description=f"What the Nova API reads from `{spec.key}`, checked after each refresh.",
        retry_policy=NOVA_RETRY_POLICY,
    )
    def cache_contents(context: dg.AssetCheckExecutionContext, redis: RedisResource) -> Iterator[dg.AssetCheckResult]:
        findings, max_items = inspect_values(spec, read_cache(redis.get_client(), spec))
        context.log.info(f"checked {findings.keys} key(s), {findings.entries} entries of {spec.key}: {findings.counts}")
        yield from check_results(spec, findings, max_items)

    return cache_contents


def build_freshness_checks(specs: Sequence[CacheCheckSpec]) -> list[dg.AssetChecksDefinition]:
    # Freshness checks (rather than 1.13's FreshnessPolicy on the asset) keep this cross-cutting
    # policy here, visible as checks in the UI, without touching each domain's asset definitions.
    return [
        build_freshness_check(spec.asset_key, timedelta(seconds=JOB_INTERVALS.get(spec.job_name, 3600) * STALE_AFTER_INTERVALS))
        for spec in specs
    ]


# Trending and feeds check their values in their own step (see the module docstring).
CHECKED_IN_STEP = {spec.job_name for spec in (*TRENDING_CHECKS, FEEDS_CHECKS)}
cache_content_checks = [build_cache_checks(spec) for spec in CACHE_CHECKS if spec.job_name not in CHECKED_IN_STEP]
freshness_checks = build_freshness_checks(CACHE_CHECKS)

# The cache jobs leave these to the sensor by name (`lib.cache_checks.without_freshness_checks`).
assert {key.name for checks in freshness_checks for key in checks.check_keys} == {FRESHNESS_CHECK_NAME}
freshness_sensor = build_freshness_sensor(freshness_checks, name="cache_freshness_sensor")
