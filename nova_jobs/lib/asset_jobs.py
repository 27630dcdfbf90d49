"""Which Nova job an asset belongs to, for runs launched outside Nova's jobs.

A "Materialize" click, a backfill or a re-execution of a selection runs as Dagster's
`__ASSET_JOB`. The run queue, the DLQ message, the replay sensor, the exporter and the health
endpoint still need the Nova job it stands for: the job whose asset selection covers the run's
assets. The run queue and the exporter read this without loading the code location, so the
mapping comes from `nova_jobs.catalog`; a test checks it against the jobs' selections in the definitions.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from nova_jobs.catalog import ASSET_JOBS
from nova_jobs.lib.tags import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG


def is_internal_job(job_name: str | None) -> bool:
    """Dagster's implicit jobs (`__ASSET_JOB`, ...): what the UI launches selections as."""
    return bool(job_name) and job_name.startswith("__")


def job_for_assets(asset_keys: Iterable[dg.AssetKey]) -> str | None:
    """The one Nova job that covers every key, or None (no keys, or keys of several jobs)."""
    jobs = {ASSET_JOBS.get(key.to_user_string()) for key in asset_keys}
    if len(jobs) != 1 or None in jobs:
        return None
    return jobs.pop()


def nova_job_of(run: dg.DagsterRun) -> str | None:
    """The Nova job a run stands for: its own job, or for an implicit job's run the job whose
    assets it materializes. None for a run that materializes no asset (a run of checks only,
    such as a re-run of a check) or assets of several jobs."""
    if not is_internal_job(run.job_name):
        return run.job_name
    return job_for_assets(run.asset_selection or ())


def asset_selection_of(run: dg.DagsterRun) -> list[str]:
    """The run's asset selection as sorted user strings (empty for a job's own run)."""
    return sorted(key.to_user_string() for key in (run.asset_selection or ()))


def partition_scope(tags: dict[str, str]) -> dict[str, str]:
    """What a run covers: one partition, or a range (a single-run backfill)."""
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return {"partition_range_start": tags[RANGE_START_TAG], "partition_range_end": tags[RANGE_END_TAG]}
    if tags.get(PARTITION_TAG):
        return {"partition_key": tags[PARTITION_TAG]}
    return {}
