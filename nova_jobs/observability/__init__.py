"""Observability: checks on what the caches hold, freshness policies, run logs with a
correlation id, and (in `cli`/`server`) the Prometheus exporter and /health/jobs."""

import dagster as dg

from nova_jobs.observability.checks import cache_content_checks
from nova_jobs.observability.correlation import nova_console_logger

defs = dg.Definitions(asset_checks=cache_content_checks, loggers={"console": nova_console_logger})
