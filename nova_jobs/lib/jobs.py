"""A cache job and its schedule, defined the same way for every domain."""

import dagster as dg

from nova_jobs.lib.tags import job_tags


def scheduled_job(
    name: str,
    selection: dg.AssetSelection,
    cron: str,
    description: str,
    extra_tags: dict[str, str] | None = None,
    executor_def: dg.ExecutorDefinition | None = None,
) -> tuple:
    """(job, schedule): the asset job `name`, with the tags the run coordinator limits on, and
    `{name}_schedule` on `cron` in UTC, running from the start."""
    job = dg.define_asset_job(
        name=name,
        selection=selection,
        tags={**job_tags(name), **(extra_tags or {})},
        executor_def=executor_def,
        description=description,
    )
    schedule = dg.ScheduleDefinition(
        name=f"{name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return job, schedule
