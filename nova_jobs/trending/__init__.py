import dagster as dg

from nova_jobs.trending.assets import trending_assets, trending_jobs, trending_schedules
from nova_jobs.trending.history import trending_history, trending_history_job, trending_history_schedule

defs = dg.Definitions(
    assets=[*trending_assets, trending_history],
    jobs=[*trending_jobs, trending_history_job],
    schedules=[*trending_schedules, trending_history_schedule],
)
