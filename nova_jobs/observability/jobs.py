"""The jobs operators watch, and how often each is meant to succeed."""

from __future__ import annotations

# Dagster job name -> schedule interval in seconds (the contract's five jobs). Jobs found in the
# instance but not listed here are reported too; their health then depends on failures only.
JOB_INTERVALS: dict[str, int] = {
    "trending_1h": 60,
    "trending_24h": 300,
    "trending_7d": 3600,
    "suggested_users": 600,
    "cache_warmer": 60,
}

# Healthy while the last success is younger than this many intervals...
STALE_AFTER_INTERVALS = 2.0
# ...and fewer than this many runs in a row have failed.
MAX_CONSECUTIVE_FAILURES = 3

# Run tags written by other parts of Nova Jobs.
DLQ_PUBLISHED_TAG = "nova/dlq_published"  # set by the dead-letter failure sensor once published
CORRELATION_TAG = "nova/correlation_id"  # set by the replay sensor: the original run's id

# Duration buckets (seconds) for jobs of 50 ms to 10 minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)


def is_internal_job(job_name: str) -> bool:
    """Dagster's implicit jobs (`__ASSET_JOB`, ...), run from the UI: counted, never judged."""
    return job_name.startswith("__")


def correlation_id(tags: dict[str, str] | None, run_id: str | None) -> str:
    """The id that follows one failure from its first run through every replay to the DLQ."""
    return (tags or {}).get(CORRELATION_TAG) or run_id or "-"
