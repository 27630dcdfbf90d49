"""The `suggested_users` job and its schedule."""

import dagster as dg

from nova_jobs.lib.tags import job_tags
from nova_jobs.suggestions.assets import SUGGESTED_USERS_KEY


def build_suggestions_definitions(asset: dg.AssetsDefinition, checks: list | None = None) -> dg.Definitions:
    suggested_users_job = dg.define_asset_job(
        name="suggested_users",
        selection=dg.AssetSelection.assets(SUGGESTED_USERS_KEY).without_checks(),
        tags=job_tags("suggested_users"),
        description="Refresh nova:cache:suggested_users:{user_id} for every active user.",
    )
    schedule = dg.ScheduleDefinition(
        name="suggested_users_schedule",
        job=suggested_users_job,
        cron_schedule="*/10 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(assets=[asset], asset_checks=checks or [], jobs=[suggested_users_job], schedules=[schedule])
