"""A Nova job's asset policies, job and schedule, built the same way for every domain from its
declaration in `nova_jobs.catalog`."""

from __future__ import annotations

from typing import Any

import dagster as dg

from nova_jobs.catalog import NovaJob
from nova_jobs.lib.tags import job_tags

OWNERS = ["team:nova-jobs"]


def asset_policies(job: NovaJob, retry_policy: dg.RetryPolicy | None = None) -> dict[str, Any]:
    """What every op-backed Nova asset takes from its job: key, lineage, pool and retries (tests
    pass a quicker retry policy)."""
    return {
        "key": job.asset_key,
        "deps": list(job.reads),
        "pool": job.pool,
        "retry_policy": retry_policy or job.retries.policy,
        "owners": OWNERS,
    }


def scheduled_job(
    job: NovaJob,
    selection: dg.AssetSelection,
    description: str,
    extra_tags: dict[str, str] | None = None,
    executor_def: dg.ExecutorDefinition | None = None,
) -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """(job, schedule): the asset job, with the tags the run coordinator limits and orders on,
    and `{name}_schedule` on the job's cron in UTC, running from the start."""
    asset_job = dg.define_asset_job(
        name=job.name,
        selection=selection,
        tags={**job_tags(job.name), **(extra_tags or {})},
        executor_def=executor_def,
        description=description,
    )
    schedule = dg.ScheduleDefinition(
        name=f"{job.name}_schedule",
        job=asset_job,
        cron_schedule=job.cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return asset_job, schedule
