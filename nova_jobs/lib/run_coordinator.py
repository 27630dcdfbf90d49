"""The run queue of every instance file (dagster.yaml, deploy/dagster.prod.yaml, the Helm values).

Dagster resolves `max_concurrent_runs: {env: VAR}` only when VAR is set and has no default, so
an instance file that names MAX_CONCURRENT_JOBS fails to load without it. This coordinator
takes the limit from MAX_CONCURRENT_JOBS (default 5, the old worker's semaphore) when the file
leaves `max_concurrent_runs` out; a value in the file still wins.

Every run is submitted through here, whoever launched it (schedule, sensor, launchpad,
"Materialize", a backfill, a re-execution), so this is where a run launched as Dagster's
`__ASSET_JOB` gets the tags Nova's own jobs carry: the tag limits and run monitoring then
hold for it too.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from nova_jobs.lib.asset_jobs import nova_job_of
from nova_jobs.lib.settings import setting_int
from nova_jobs.lib.tags import JOB_TAG, WAREHOUSE_TAG, job_tags

DEFAULT_MAX_CONCURRENT_JOBS = 5


def missing_nova_tags(run: dg.DagsterRun) -> dict[str, str]:
    """The Nova tags a run lacks: its job's (`lib.tags.job_tags`, priority included). A run of
    assets of several jobs still counts as a warehouse run; a run of checks only reads Redis
    alone. Every run gets a maximum runtime."""
    wanted = job_tags(nova_job_of(run))
    if JOB_TAG not in wanted and not run.asset_selection:
        del wanted[WAREHOUSE_TAG]
    return {key: value for key, value in wanted.items() if key not in run.tags}


class NovaRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's QueuedRunCoordinator; it also tags runs launched outside Nova's jobs."""

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        if config_value.get("max_concurrent_runs") is None:
            limit = setting_int("MAX_CONCURRENT_JOBS", None, DEFAULT_MAX_CONCURRENT_JOBS, minimum=1)
            config_value = {**config_value, "max_concurrent_runs": limit}
        return super().from_config_value(inst_data, config_value)

    def submit_run(self, context) -> dg.DagsterRun:
        run = context.dagster_run
        if run.status == dg.DagsterRunStatus.NOT_STARTED:
            # Before the run is queued: the dequeuer reads the limits from these tags.
            tags = missing_nova_tags(run)
            if tags:
                self._instance.add_run_tags(run.run_id, tags)
        return super().submit_run(context)
