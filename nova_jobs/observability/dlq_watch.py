"""Is the dead-letter pipeline keeping up? Dead runs not yet on `jobs-dlq`, and the replay
sensor's own counts of what waits, what is parked and what it skipped.

Unpublished runs are tracked from the run records the ledger already reads (each refresh only
reads runs updated since the last one, and marking a run published updates it), so this costs
no query of its own; only runs that failed within `NOVA_DLQ_LOOKBACK_HOURS` are kept, the
window the failure sensor publishes from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import dagster as dg

from nova_jobs.deadletter.message import is_published
from nova_jobs.lib.asset_jobs import nova_job_of
from nova_jobs.lib.tags import WILL_RETRY_TAG

log = logging.getLogger(__name__)

REPLAY_SENSOR = "dlq_replay_sensor"
REPLAY_STATES = ("waiting", "parked", "skipped")
# The replay sensor's cursor names a handful of jobs; a corrupt one must not flood the scrape.
MAX_SUMMARY_JOBS = 200
MAX_COUNT = 2**53  # exact as a Prometheus float


def is_dead(run: dg.DagsterRun) -> bool:
    """Failed for good: a failure Dagster will not retry."""
    return run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) != "true"


@dataclass(frozen=True)
class Backlog:
    runs: int
    oldest_age_seconds: float


class UnpublishedRuns:
    """Dead runs without their own published marker, by run id: (job name, failed at)."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[str, float]] = {}

    def observe(self, run: dg.DagsterRun, failed_at: float) -> None:
        if is_dead(run) and not is_published(run):
            self.runs[run.run_id] = (nova_job_of(run) or run.job_name, failed_at)
        else:
            self.runs.pop(run.run_id, None)

    def backlog(self, now: float, lookback_seconds: float) -> dict[str, Backlog]:
        """Per job, the runs that failed within the lookback; older ones are forgotten (the
        failure sensor no longer looks at them either)."""
        horizon = now - lookback_seconds
        self.runs = {rid: entry for rid, entry in self.runs.items() if entry[1] >= horizon}
        oldest: dict[str, float] = {}
        counts: dict[str, int] = {}
        for job_name, failed_at in self.runs.values():
            counts[job_name] = counts.get(job_name, 0) + 1
            oldest[job_name] = min(oldest.get(job_name, failed_at), failed_at)
        return {job: Backlog(counts[job], max(0.0, now - oldest[job])) for job in counts}


class CorruptSummary(ValueError):
    pass


def parse_summary(cursor: str | None) -> dict[str, dict[str, int]]:
    """`{job_name: {"waiting": n, "parked": n, "skipped": n}}` from the replay sensor's cursor;
    empty when the cursor has no summary (an older sensor), CorruptSummary when it is unreadable."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except (ValueError, RecursionError) as error:
        raise CorruptSummary(f"cursor is not JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise CorruptSummary(f"cursor is a JSON {type(data).__name__}, not an object")
    summary = data.get("summary")
    if summary is None:
        return {}
    if not isinstance(summary, dict):
        raise CorruptSummary(f"summary is a JSON {type(summary).__name__}, not an object")
    if len(summary) > MAX_SUMMARY_JOBS:
        raise CorruptSummary(f"summary names {len(summary)} jobs (at most {MAX_SUMMARY_JOBS} expected)")
    result = {}
    for job_name, counts in summary.items():
        if not isinstance(counts, dict):
            raise CorruptSummary(f"summary of job {job_name[:100]!r} is not an object")
        clean = {}
        for state in REPLAY_STATES:
            value = counts.get(state, 0)
            # bool is an int to Python, not a count.
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise CorruptSummary(f"summary {state} of job {job_name[:100]!r} is not a count: {str(value)[:50]!r}")
            clean[state] = value
        result[job_name] = clean
    return result


def parse_tracking(cursor: str | None) -> dict[str, int]:
    """`{"listed": n, "untracked": n, "cap": n}` from the replay sensor's cursor (parked messages
    listed one by one, those only counted, and NOVA_DLQ_MAX_TRACKED); empty when absent or
    unreadable (the summary's reader reports a corrupt cursor)."""
    try:
        data = json.loads(cursor or "{}")
    except (ValueError, RecursionError):
        return {}
    tracking = data.get("tracking") if isinstance(data, dict) else None
    if not isinstance(tracking, dict):
        return {}
    clean = {}
    for name in ("listed", "untracked", "cap"):
        value = tracking.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            return {}
        clean[name] = value
    return clean


class ReplaySummary:
    """The last readable summary of the replay sensor; a corrupt cursor is logged once, not
    on every scrape, and serves no series until a readable one replaces it."""

    def __init__(self) -> None:
        self._cursor: str | None = None
        self._summary: dict[str, dict[str, int]] = {}
        self.corrupt = False

    def read(self, cursor: str | None) -> dict[str, dict[str, int]]:
        if cursor == self._cursor:
            return self._summary
        self._cursor = cursor
        try:
            self._summary = parse_summary(cursor)
            self.corrupt = False
        except CorruptSummary as error:
            if not self.corrupt:
                log.warning("the %s cursor's summary is unreadable, DLQ backlog not reported: %s", REPLAY_SENSOR, error)
            self.corrupt = True
            self._summary = {}
        return self._summary
