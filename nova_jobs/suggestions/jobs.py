"""The `suggested_users` job and its schedule."""

import dagster as dg

from nova_jobs.executors import executor_for_sharded_jobs
from nova_jobs.lib.tags import job_tags
from nova_jobs.suggestions.assets import SUGGESTED_USERS_KEY


def build_suggestions_definitions(asset: dg.AssetsDefinition, checks: list[dg.AssetChecksDefinition]) -> dg.Definitions:
    # The holdout check re-ranks a sample of users: daily, in a job of its own, not every 10 minutes.
    quality = dg.AssetSelection.checks(*checks)
    suggested_users_job = dg.define_asset_job(
        name="suggested_users",
        selection=dg.AssetSelection.assets(SUGGESTED_USERS_KEY) - quality,
        tags=job_tags("suggested_users"),
        # Under k8s each shard step is a pod of its own (sized by its op tag).
        executor_def=executor_for_sharded_jobs(),
        description="Refresh nova:cache:suggested_users:{user_id} for every active user.",
    )
    schedule = dg.ScheduleDefinition(
        name="suggested_users_schedule",
        job=suggested_users_job,
        cron_schedule="*/10 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    quality_job = dg.define_asset_job(
        name="suggested_users_quality",
        selection=quality,
        tags=job_tags("suggested_users_quality"),
        description="Measure suggestion quality (recall@20) on a temporal holdout of recent follows.",
    )
    quality_schedule = dg.ScheduleDefinition(
        name="suggested_users_quality_schedule",
        job=quality_job,
        cron_schedule="30 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(
        assets=[asset],
        asset_checks=checks,
        jobs=[suggested_users_job, quality_job],
        schedules=[schedule, quality_schedule],
    )
