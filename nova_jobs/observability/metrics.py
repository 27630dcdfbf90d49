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
        yield GaugeMetricFamily("nova_exporter_up", "1 when this scrape read the Dagster instance.", value=refreshed)
        yield GaugeMetricFamily(
            "nova_exporter_refresh_records", "Run records read by this scrape's refresh.", value=self.ledger.last_refresh_records
        )
        yield CounterMetricFamily("nova_exporter_records_read_total", "Run records read since start.", value=self.ledger.records_read)
        yield GaugeMetricFamily("nova_exporter_scrape_seconds", "Time to compute this scrape.", value=time.perf_counter() - began)


def build_registry(ledger: RunLedger, intervals: dict[str, int] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NovaJobsCollector(ledger, intervals))
    return registry
