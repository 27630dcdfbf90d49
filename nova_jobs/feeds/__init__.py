import dagster as dg

from nova_jobs.feeds.assets import cache_warmer_job, cache_warmer_schedule, feeds

defs = dg.Definitions(assets=[feeds], jobs=[cache_warmer_job], schedules=[cache_warmer_schedule])
