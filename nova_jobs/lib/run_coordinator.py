"""The run queue of both instance files (dagster.yaml, deploy/dagster.prod.yaml).

Dagster resolves `max_concurrent_runs: {env: VAR}` only when VAR is set and has no default, so
an instance file that names MAX_CONCURRENT_JOBS fails to load without it. This coordinator
takes the limit from MAX_CONCURRENT_JOBS (default 5, the old worker's semaphore) when the file
leaves `max_concurrent_runs` out; a value in the file still wins.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from nova_jobs.lib.settings import setting_int

DEFAULT_MAX_CONCURRENT_JOBS = 5


class NovaRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's QueuedRunCoordinator; only where its run limit comes from differs."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        if config_value.get("max_concurrent_runs") is None:
            limit = setting_int("MAX_CONCURRENT_JOBS", None, DEFAULT_MAX_CONCURRENT_JOBS, minimum=1)
            config_value = {**config_value, "max_concurrent_runs": limit}
        return super().from_config_value(inst_data, config_value)
