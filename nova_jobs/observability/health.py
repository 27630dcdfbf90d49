"""`/health/jobs`: is each job succeeding on time?

A job is healthy when its last success is younger than about twice its interval and fewer than
3 runs in a row have failed. A listed job that has not succeeded yet gets the same grace,
counted from when the exporter started (a fresh deployment is not an outage).

Each cache job also shows `freshness`: the state Dagster's freshness daemon last recorded for its
asset under the same rule (`observability.freshness`), as the UI shows it; null until the
daemon has evaluated it. The verdict is the exporter's own, so it holds while the daemon is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nova_jobs.lib.timing import iso_z
from nova_jobs.lib.asset_jobs import is_internal_job
from nova_jobs.observability.jobs import JOB_INTERVALS, MAX_CONSECUTIVE_FAILURES, STALE_AFTER_INTERVALS
from nova_jobs.observability.ledger import RunLedger


@dataclass(frozen=True)
class JobHealth:
    job_name: str
    healthy: bool
    reasons: list[str]
    interval_seconds: int | None
    last_success: float | None
    last_success_run_id: str | None
    consecutive_failures: int
    last_failure_run_id: str | None
    freshness: str | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "reasons": self.reasons,
            "interval_seconds": self.interval_seconds,
            "max_age_seconds": self.interval_seconds * STALE_AFTER_INTERVALS if self.interval_seconds else None,
            "last_success": _iso(self.last_success),
            "last_success_age_seconds": round(now - self.last_success, 3) if self.last_success else None,
            "last_success_run_id": self.last_success_run_id,
            "consecutive_failures": self.consecutive_failures,
            "last_failure_run_id": self.last_failure_run_id,
            "freshness": self.freshness,
        }


def _iso(timestamp: float | None) -> str | None:
    return iso_z(datetime.fromtimestamp(timestamp, UTC)) if timestamp is not None else None


def watched_jobs(ledger: RunLedger, intervals: dict[str, int]) -> list[str]:
    found = [name for name in ledger.jobs if name not in intervals and not is_internal_job(name)]
    return [*intervals, *sorted(found)]


def job_health(ledger: RunLedger, now: float | None = None, intervals: dict[str, int] | None = None) -> list[JobHealth]:
    now = time.time() if now is None else now
    intervals = JOB_INTERVALS if intervals is None else intervals
    result = []
    for name in watched_jobs(ledger, intervals):
        stats = ledger.jobs.get(name)
        interval = intervals.get(name)
        reasons = []
        last_success = stats.last_success_end if stats else None
        failures = stats.consecutive_failures if stats else 0
        if interval is not None:
            max_age = interval * STALE_AFTER_INTERVALS
            if last_success is None:
                if now - ledger.started_at > max_age:
                    reasons.append(f"no successful run recorded (expected every {interval} s)")
            elif now - last_success > max_age:
                reasons.append(
                    f"last success {now - last_success:.0f} s ago, more than {max_age:.0f} s "
                    f"({STALE_AFTER_INTERVALS:g} x its {interval} s interval)"
                )
        if failures >= MAX_CONSECUTIVE_FAILURES:
            reasons.append(f"{failures} consecutive failures (limit {MAX_CONSECUTIVE_FAILURES - 1})")
        result.append(
            JobHealth(
                job_name=name,
                healthy=not reasons,
                reasons=reasons,
                interval_seconds=interval,
                last_success=last_success,
                last_success_run_id=stats.last_success_run_id if stats else None,
                consecutive_failures=failures,
                last_failure_run_id=stats.last_failure_run_id if stats else None,
                freshness=ledger.freshness.get(name),
            )
        )
    return result


def health_report(ledger: RunLedger, now: float | None = None, intervals: dict[str, int] | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body): 200 when every job is healthy, else 503."""
    now = time.time() if now is None else now
    jobs = job_health(ledger, now, intervals)
    unhealthy = [job.job_name for job in jobs if not job.healthy]
    body = {
        "healthy": not unhealthy,
        "unhealthy_jobs": unhealthy,
        "checked_at": _iso(now),
        "jobs": {job.job_name: job.as_json(now) for job in jobs},
    }
    return (200 if not unhealthy else 503), body
