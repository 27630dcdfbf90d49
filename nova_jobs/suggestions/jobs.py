"""The `suggested_users` job, the daily quality job, and their schedules."""

import dagster as dg

from nova_jobs.catalog import SUGGESTED_USERS, SUGGESTED_USERS_QUALITY
from nova_jobs.executors import executor_for_sharded_jobs
from nova_jobs.lib.jobs import scheduled_job


def build_suggestions_definitions(asset: dg.AssetsDefinition, checks: list[dg.AssetChecksDefinition]) -> dg.Definitions:
    # The holdout check re-ranks a sample of users: daily, in a job of its own, not every 10 minutes.
    quality = dg.AssetSelection.checks(*checks)
    suggested_users_job, schedule = scheduled_job(
        SUGGESTED_USERS,
        dg.AssetSelection.assets(SUGGESTED_USERS.asset_key) - quality,
        f"Refresh {SUGGESTED_USERS.redis_key} for every active user.",
        # Under k8s each shard step is a pod of its own (sized by its op tag).
        executor_def=executor_for_sharded_jobs(),
    )
    quality_job, quality_schedule = scheduled_job(
        SUGGESTED_USERS_QUALITY,
        quality,
        "Measure suggestion quality (recall@20) on a temporal holdout of recent follows.",
    )
    return dg.Definitions(
        assets=[asset],
        asset_checks=checks,
        jobs=[suggested_users_job, quality_job],
        schedules=[schedule, quality_schedule],
    )
