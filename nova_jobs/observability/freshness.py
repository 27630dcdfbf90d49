"""Freshness of the caches, as Dagster 1.13 expresses it: a `FreshnessPolicy` per cache asset,
applied once to the code location's definitions from each job's declared interval.

Dagster's freshness daemon (part of `dagster-daemon`, on by default: `freshness.enabled` in the
instance files) evaluates the policies and records state changes in the event log; the UI shows
each cache's state on its asset page and in the catalog, and the exporter reads the same states
for `/health/jobs`. A cache never materialized is UNKNOWN (pending), not failing: a fresh stack
is not an outage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from nova_jobs.catalog import CACHE_JOBS, CacheJob
from nova_jobs.observability.jobs import STALE_AFTER_INTERVALS

# A cache warns once it missed one refresh and a half, and fails after two: the health rule.
WARN_AFTER_INTERVALS = 1.5


def freshness_policy(job: CacheJob) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=job.interval * STALE_AFTER_INTERVALS,
        warn_window=job.interval * WARN_AFTER_INTERVALS,
    )


def with_freshness_policies(assets: Iterable, jobs: Sequence[CacheJob] = CACHE_JOBS) -> list:
    """The assets with each cache's freshness policy attached (others unchanged). Per assets
    definition, because `Definitions.map_asset_specs` is still a preview API in 1.13."""
    policies = {job.asset_key: freshness_policy(job) for job in jobs}

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        policy = policies.get(spec.key)
        return spec if policy is None else dg.apply_freshness_policy(spec, policy)

    return [
        asset.map_asset_specs(attach)
        if isinstance(asset, dg.AssetsDefinition) and policies.keys() & set(asset.keys)
        else asset
        for asset in assets
    ]


def freshness_states(instance: dg.DagsterInstance, jobs: Sequence[CacheJob] = CACHE_JOBS) -> Mapping[str, str]:
    """Job name -> the freshness state the daemon last recorded for its asset (PASS, WARN, FAIL,
    UNKNOWN); a job whose asset has no record yet is left out."""
    records = instance.get_freshness_state_records([job.asset_key for job in jobs])
    by_key = {job.asset_key: job.name for job in jobs}
    return {by_key[key]: record.freshness_state.value for key, record in records.items() if key in by_key}
