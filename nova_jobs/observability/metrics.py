"""The contract's Prometheus metrics, computed from the ledger at scrape time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nova_jobs.observability.health import job_health, watched_jobs
from nova_jobs.observability.jobs import JOB_INTERVALS
from nova_jobs.observability.ledger import STATUS_LABELS, JobStats, RunLedger

log = logging.getLogger(__name__)


class NovaJobsCollector(Collector):
    def __init__(self, ledger: RunLedger, intervals: dict[str, int] | None = None) -> None:
        self.ledger = ledger
        self.intervals = JOB_INTERVALS if intervals is None else intervals

    def collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        refreshed = 1
        try:
            self.ledger.refresh()
        except Exception:  # noqa: BLE001 - serve the last known figures, flagged as stale
            log.exception("reading the Dagster instance failed")
            refreshed = 0
        now = time.time()
        names = sorted(set(watched_jobs(self.ledger, self.intervals)) | set(self.ledger.jobs))
        empty = JobStats()
        stats = {name: self.ledger.jobs.get(name, empty) for name in names}

        runs = CounterMetricFamily("job_runs_total", "Finished runs per job and final status.", labels=["job_name", "status"])
        duration = HistogramMetricFamily("job_duration_seconds", "Run duration, start to end, of finished runs.", labels=["job_name"])
        last_success = GaugeMetricFamily("job_last_success_timestamp", "Unix time the last successful run ended.", labels=["job_name"])
        failures = GaugeMetricFamily("job_consecutive_failures", "Failed runs since the last success.", labels=["job_name"])
        items = GaugeMetricFamily("job_items_processed", "items_processed reported by the last successful run.", labels=["job_name"])
        dlq = CounterMetricFamily("job_dlq_messages_total", "Runs published to the jobs-dlq topic.", labels=["job_name"])
        for name, job in stats.items():
            for label in STATUS_LABELS.values():
                runs.add_metric([name, label], job.runs[label])
            duration.add_metric([name], job.cumulative_buckets(), job.duration_sum)
            if job.last_success_end is not None:
                last_success.add_metric([name], job.last_success_end)
            failures.add_metric([name], job.consecutive_failures)
            if job.items_processed is not None:
                items.add_metric([name], job.items_processed)
            dlq.add_metric([name], job.dlq_messages)

        health = GaugeMetricFamily("job_health", "1 when the job is healthy (see /health/jobs), else 0.", labels=["job_name"])
        for verdict in job_health(self.ledger, now, self.intervals):
            health.add_metric([verdict.job_name], 1 if verdict.healthy else 0)

        yield from (runs, duration, last_success, health, failures, items, dlq)
        yield from dlq_pipeline_metrics(self.ledger, names)
        yield GaugeMetricFamily("nova_exporter_up", "1 when this scrape read the Dagster instance.", value=refreshed)
        yield GaugeMetricFamily(
            "nova_exporter_refresh_records", "Run records read by this scrape's refresh.", value=self.ledger.last_refresh_records
        )
        yield CounterMetricFamily("nova_exporter_records_read_total", "Run records read since start.", value=self.ledger.records_read)
        yield GaugeMetricFamily("nova_exporter_scrape_seconds", "Time to compute this scrape.", value=time.perf_counter() - began)


def dlq_pipeline_metrics(ledger: RunLedger, job_names: list[str]) -> Iterator[Metric]:
    """The dead-letter pipeline watching itself: dead runs not yet on jobs-dlq, the sensors'
    ticks, and what the replay sensor holds back."""
    unpublished = GaugeMetricFamily(
        "nova_dlq_unpublished_runs",
        "Dead runs (failed, not to be retried) the failure sensor has not published to jobs-dlq yet, failed within NOVA_DLQ_LOOKBACK_HOURS.",
        labels=["job_name"],
    )
    oldest = GaugeMetricFamily(
        "nova_dlq_unpublished_oldest_age_seconds", "Seconds since the oldest unpublished dead run failed (0 when none).", labels=["job_name"]
    )
    for name in sorted(set(job_names) | set(ledger.dlq_backlog)):
        backlog = ledger.dlq_backlog.get(name)
        unpublished.add_metric([name], backlog.runs if backlog else 0)
        oldest.add_metric([name], backlog.oldest_age_seconds if backlog else 0.0)
    yield from (unpublished, oldest)

    sensor_labels = ["sensor_name", "code_location"]
    running = GaugeMetricFamily("nova_sensor_running", "1 when the sensor is running, 0 when stopped.", labels=sensor_labels)
    last_tick = GaugeMetricFamily(
        "nova_sensor_last_success_timestamp", "Unix time the sensor's last successful (or skipped) tick started.", labels=sensor_labels
    )
    failed_ticks = GaugeMetricFamily(
        "nova_sensor_consecutive_failed_ticks", "Ticks of the sensor that failed since its last successful one.", labels=sensor_labels
    )
    for sensor in ledger.sensors:
        labels = [sensor.name, sensor.code_location]
        running.add_metric(labels, 1 if sensor.running else 0)
        if sensor.last_success is not None:
            last_tick.add_metric(labels, sensor.last_success)
        failed_ticks.add_metric(labels, sensor.consecutive_failures)
    yield from (running, last_tick, failed_ticks)

    waiting = GaugeMetricFamily("nova_dlq_waiting_messages", "DLQ messages cooling down before their automatic replay.", labels=["job_name"])
    parked = GaugeMetricFamily("nova_dlq_parked_messages", "DLQ messages parked until an operator replays them.", labels=["job_name"])
    skipped = CounterMetricFamily("nova_dlq_skipped_messages", "DLQ records the replay sensor skipped (malformed, unknown job, duplicate, stale, max replays).", labels=["job_name"])
    for name, counts in sorted(ledger.replay_summary.items()):
        waiting.add_metric([name], counts["waiting"])
        parked.add_metric([name], counts["parked"])
        skipped.add_metric([name], counts["skipped"])
    yield from (waiting, parked, skipped)

    tracked = GaugeMetricFamily("nova_dlq_tracked_messages", "Parked DLQ messages the replay sensor lists one by one (the UI table).")
    cap = GaugeMetricFamily("nova_dlq_tracked_cap", "How many parked messages it lists at most (NOVA_DLQ_MAX_TRACKED); beyond, only counted.")
    if ledger.replay_tracking:
        tracked.add_metric([], ledger.replay_tracking["listed"])
        cap.add_metric([], ledger.replay_tracking["cap"])
    yield from (tracked, cap)


def build_registry(ledger: RunLedger, intervals: dict[str, int] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NovaJobsCollector(ledger, intervals))
    return registry
