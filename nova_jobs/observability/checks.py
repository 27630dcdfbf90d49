"""Asset checks on what the cache jobs write, as the Nova API reads it.

Every cache asset has one check, `contents`, judging four aspects of its values (valid JSON,
ranked, no duplicates, at most K entries; `lib.cache_checks`). Caches of one key per user are
checked on a sample of keys. The trending and feed assets declare the check
(`content_check_specs`) and evaluate it in their own step on the values they have just written,
so a run is one step; the sharded suggestions asset has no step that sees every value, so its
check reads Redis back in a step of its own (`build_cache_checks`).

Freshness is a Dagster `FreshnessPolicy` per cache (`observability.freshness`), evaluated by the
daemon, not a check.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from nova_jobs.catalog import SUGGESTED_USERS, CacheJob
from nova_jobs.lib.cache_checks import SAMPLE_KEYS, check_results, content_check_specs, inspect_values
from nova_jobs.resources.redis import RedisResource

# The caches whose checks read Redis back; the others check the values in their own step.
READ_BACK_JOBS: tuple[CacheJob, ...] = (SUGGESTED_USERS,)


def read_cache(client, job: CacheJob) -> Iterator[tuple[str, Any]]:
    if not job.per_user:
        yield job.redis_key, client.get(job.redis_key)
        return
    keys = []
    for key in client.scan_iter(match=job.scan_pattern, count=1000):
        key = key.decode() if isinstance(key, bytes) else key
        if not key.endswith(":meta"):
            keys.append(key)
        if len(keys) >= SAMPLE_KEYS:
            break
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        yield from zip(chunk, client.mget(chunk))


def build_cache_checks(job: CacheJob) -> dg.AssetChecksDefinition:
    """The content check in a step of its own, reading the values back from Redis."""
    name = "__".join(job.asset_key.path)

    @dg.multi_asset_check(
        name=f"{name}_contents",
        specs=content_check_specs(job),
        description=f"What the Nova API reads from `{job.redis_key}`, checked after each refresh.",
        retry_policy=job.retries.policy,
    )
    def cache_contents(context: dg.AssetCheckExecutionContext, redis: RedisResource) -> Iterator[dg.AssetCheckResult]:
        findings, max_items = inspect_values(job, read_cache(redis.get_client(), job))
        context.log.info(f"checked {findings.keys} key(s), {findings.entries} entries of {job.redis_key}: {findings.counts}")
        yield from check_results(job, findings, max_items)

    return cache_contents


cache_content_checks = [build_cache_checks(job) for job in READ_BACK_JOBS]
