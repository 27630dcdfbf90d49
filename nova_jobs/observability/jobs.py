"""The jobs operators watch, and how often each is meant to succeed (from `nova_jobs.catalog`)."""

from __future__ import annotations

from nova_jobs.catalog import CACHE_JOBS

# Dagster job name -> expected interval in seconds (the contract's five jobs). Jobs found in the
# instance but not listed here are reported too; their health then depends on failures only.
JOB_INTERVALS: dict[str, int] = {job.name: int(job.interval.total_seconds()) for job in CACHE_JOBS}

# Healthy while the last success is younger than this many intervals...
STALE_AFTER_INTERVALS = 2.0
# ...and fewer than this many runs in a row have failed.
MAX_CONSECUTIVE_FAILURES = 3

# Duration buckets (seconds) for jobs of 50 ms to 10 minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)
