"""What the Dagster instance says about every Nova job, read incrementally.

The instance is the source of truth: run records (including runs that crashed and were marked
failed by run monitoring, or never started) and materialization metadata. The ledger reads
them once in full at startup (in pages, by storage id), then on each refresh only the runs
updated since the last one (by `update_timestamp`, with an overlap for late writers), so a
scrape costs the same with 100 or 100,000 runs. Each finished run is counted once, so the
counters only grow.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from nova_jobs.deadletter import settings as dlq_settings
from nova_jobs.deadletter.message import is_published
from nova_jobs.lib.asset_jobs import nova_job_of
from nova_jobs.observability.dlq_watch import REPLAY_SENSOR, Backlog, ReplaySummary, UnpublishedRuns, parse_tracking
from nova_jobs.observability.freshness import freshness_states
from nova_jobs.observability.jobs import DURATION_BUCKETS
from nova_jobs.observability.sensor_ticks import SensorTicks, read_sensors

log = logging.getLogger(__name__)

STATUS_LABELS = {
    dg.DagsterRunStatus.SUCCESS: "success",
    dg.DagsterRunStatus.FAILURE: "failure",
    dg.DagsterRunStatus.CANCELED: "canceled",
}


@dataclass
class JobStats:
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUS_LABELS.values(), 0))
    # Non-cumulative counts per bucket of DURATION_BUCKETS, the last one for +Inf.
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    duration_count: int = 0
    last_success_end: float | None = None
    last_success_run_id: str | None = None
    # End times of failures after the last success: their number is the consecutive failures,
    # whatever order the runs are read in.
    failures_since_success: list[float] = field(default_factory=list)
    last_failure_end: float | None = None
    last_failure_run_id: str | None = None
    items_processed: float | None = None
    items_run_id: str | None = None
    dlq_messages: int = 0

    @property
    def consecutive_failures(self) -> int:
        return len(self.failures_since_success)

    def observe_duration(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        total, out = 0, []
        for bound, count in zip([*map(str, DURATION_BUCKETS), "+Inf"], self.bucket_counts):
            total += count
            out.append((bound, total))
        return out


@dataclass
class _Seen:
    finished_counted: bool
    update_ts: float


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class RunLedger:
    """Per-job figures from the instance; `refresh()` reads what changed since the last call."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        page_size: int = 5000,
        overlap_seconds: float = 120.0,
        max_pages_per_refresh: int = 20,
    ) -> None:
        self.instance = instance
        self.page_size = page_size
        self.overlap_seconds = overlap_seconds
        self.max_pages_per_refresh = max_pages_per_refresh
        self.jobs: dict[str, JobStats] = {}
        self.started_at = time.time()
        self.last_refresh_records = 0
        self.records_read = 0
        self._initialized = False
        self._watermark: float | None = None  # highest update timestamp read
        self._pruned_before = float("-inf")
        self._seen: dict[str, _Seen] = {}
        self._dlq_counted: set[str] = set()
        self.unpublished = UnpublishedRuns()
        self.dlq_backlog: dict[str, Backlog] = {}
        self.sensors: list[SensorTicks] = []
        self.replay_summary: dict[str, dict[str, int]] = {}
        self.replay_tracking: dict[str, int] = {}
        self.freshness: Mapping[str, str] = {}  # job -> the freshness daemon's last state
        self._replay_summary = ReplaySummary()
        self._lock = threading.Lock()

    def stats(self, job_name: str) -> JobStats:
        return self.jobs.setdefault(job_name, JobStats())

    def refresh(self) -> None:
        with self._lock:
            read = self._incremental_read() if self._initialized else self._full_read()
            self._read_dlq_pipeline()
            self.freshness = freshness_states(self.instance)
            self.last_refresh_records = read
            self.records_read += read

    def _full_read(self) -> int:
        cursor, read, latest = None, 0, None
        while True:
            records = self.instance.get_run_records(
                limit=self.page_size, ascending=True, cursor=cursor
            )
            self._process(records)
            read += len(records)
            if records:
                latest = max(latest or 0.0, *(_ts(r.update_timestamp) for r in records))
                cursor = records[-1].dagster_run.run_id
            if len(records) < self.page_size:
                break
        self._watermark = latest
        self._initialized = True
        self._finish_refresh()
        return read

    def _incremental_read(self) -> int:
        read = 0
        after = None if self._watermark is None else self._watermark - self.overlap_seconds
        for _ in range(self.max_pages_per_refresh):
            filters = dg.RunsFilter(updated_after=datetime.fromtimestamp(after, UTC)) if after is not None else None
            records = self.instance.get_run_records(
                filters=filters, limit=self.page_size, order_by="update_timestamp", ascending=True
            )
            self._process(records)
            read += len(records)
            if records:
                newest = _ts(records[-1].update_timestamp)
                self._watermark = max(self._watermark or newest, newest)
            if len(records) < self.page_size:
                break
            # A full page: continue after its newest timestamp (minus a second, since some
            # storages keep whole seconds; what is read twice is recognised and skipped).
            next_after = _ts(records[-1].update_timestamp) - 1.0
            if after is not None and next_after <= after:
                log.warning("more than %s runs updated within one second; reading the rest next scrape", self.page_size)
                break
            after = next_after
        self._finish_refresh()
        return read

    def _finish_refresh(self) -> None:
        if self._watermark is None:
            return
        horizon = self._watermark - 2 * self.overlap_seconds
        if horizon > self._pruned_before:
            self._seen = {rid: seen for rid, seen in self._seen.items() if seen.update_ts >= horizon}
            self._pruned_before = horizon
        self._update_items_processed()

    def _process(self, records: Iterable[dg.RunRecord]) -> None:
        for record in records:
            run = record.dagster_run
            # A "Materialize" or backfill of a job's assets counts for that job; runs of checks
            # only stay under the implicit job's name.
            job_name = nova_job_of(run) or run.job_name
            update_ts = _ts(record.update_timestamp)
            seen = self._seen.get(run.run_id)
            finished_counted = seen.finished_counted if seen else False
            label = STATUS_LABELS.get(run.status)
            if label and not finished_counted:
                end = record.end_time if record.end_time is not None else update_ts
                # A finished run no longer remembered was counted before it was forgotten.
                if seen is None and end < self._pruned_before:
                    finished_counted = True
                else:
                    self._count_finished(job_name, run.run_id, label, record.start_time, end)
                    finished_counted = True
            self.unpublished.observe(run, record.end_time if record.end_time is not None else update_ts)
            if is_published(run) and run.run_id not in self._dlq_counted:
                self._dlq_counted.add(run.run_id)
                self.stats(job_name).dlq_messages += 1
            if job_name not in self.jobs:
                self.stats(job_name)
            self._seen[run.run_id] = _Seen(finished_counted, update_ts)

    def _read_dlq_pipeline(self) -> None:
        """What watches the dead-letter queue: the unpublished backlog, the sensors' ticks and
        the replay sensor's counts (one query for the sensors, one small one per sensor)."""
        self.dlq_backlog = self.unpublished.backlog(time.time(), dlq_settings.lookback_hours() * 3600)
        self.sensors = read_sensors(self.instance)
        replay = [s for s in self.sensors if s.name == REPLAY_SENSOR]
        merged: dict[str, dict[str, int]] = {}
        # One replay sensor per code location; a deployment has one, a test instance may have more.
        for sensor in replay:
            for job_name, counts in self._replay_summary.read(sensor.cursor).items():
                into = merged.setdefault(job_name, dict.fromkeys(counts, 0))
                for state, count in counts.items():
                    into[state] += count
        self.replay_summary = merged
        tracked = [parse_tracking(sensor.cursor) for sensor in replay]
        self.replay_tracking = {name: sum(t.get(name, 0) for t in tracked) for name in ("listed", "untracked", "cap")} \
            if any(tracked) else {}

    def _count_finished(self, job_name: str, run_id: str, label: str, start: float | None, end: float) -> None:
        stats = self.stats(job_name)
        stats.runs[label] += 1
        if start is not None:
            stats.observe_duration(max(0.0, end - start))
        if label == "success":
            if stats.last_success_end is None or end > stats.last_success_end:
                stats.last_success_end, stats.last_success_run_id = end, run_id
                stats.failures_since_success = [t for t in stats.failures_since_success if t > end]
        elif label == "failure":
            if stats.last_success_end is None or end > stats.last_success_end:
                bisect.insort(stats.failures_since_success, end)
            if stats.last_failure_end is None or end > stats.last_failure_end:
                stats.last_failure_end, stats.last_failure_run_id = end, run_id

    def _update_items_processed(self) -> None:
        """`items_processed` of each job's latest success: the sum over what that run materialized."""
        for stats in self.jobs.values():
            run_id = stats.last_success_run_id
            if run_id is None or run_id == stats.items_run_id:
                continue
            stats.items_run_id = run_id
            total, found = 0.0, False
            connection = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
            for event_record in connection.records:
                materialization = event_record.event_log_entry.asset_materialization
                value = materialization.metadata.get("items_processed") if materialization else None
                if value is not None and isinstance(value.value, (int, float)):
                    total += float(value.value)
                    found = True
            if found:
                stats.items_processed = total
