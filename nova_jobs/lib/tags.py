"""Every run tag Nova Jobs writes or reads, and the correlation id derived from them.

The run coordinator limits runs by `nova/job` and `nova/warehouse` (see dagster.yaml) and adds
the job's tags to runs launched outside Nova's jobs (nova_jobs/lib/run_coordinator.py); the
exporter and the Helm values rely on these names.
"""

from __future__ import annotations

from collections.abc import Mapping

from nova_jobs.catalog import JOBS_BY_NAME

# Written by Nova Jobs.
JOB_TAG = "nova/job"
WAREHOUSE_TAG = "nova/warehouse"
PUBLISHED_TAG = "nova/dlq_published"  # by the failure sensor once the run's message is on the DLQ
CORRELATION_TAG = "nova/correlation_id"  # by the replay sensor: the first failed run's correlation id
REPLAY_OF_TAG = "nova/replay_of"
REPLAY_ATTEMPT_TAG = "nova/replay_attempt"
REPLAY_REQUEST_TAG = "nova/replay_request"
OPERATOR_ACTION_TAG = "nova/operator_action"

# Dagster's, read (and the first three written) by Nova Jobs.
MAX_RUNTIME_TAG = "dagster/max_runtime"
PRIORITY_TAG = "dagster/priority"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WILL_RETRY_TAG = "dagster/will_retry"
RETRY_NUMBER_TAG = "dagster/retry_number"
ROOT_RUN_TAG = "dagster/root_run_id"
PARENT_RUN_TAG = "dagster/parent_run_id"
FAILURE_REASON_TAG = "dagster/failure_reason"
USER_TAG = "dagster/user"

# A run still going after this long is failed by run monitoring. It is also how a run whose
# worker process died is noticed under the default run launcher, which cannot probe workers.
DEFAULT_MAX_RUNTIME_SECONDS = 1800


def job_tags(job_name: str | None, max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS) -> dict[str, str]:
    """The tags every run of a Nova job carries. `nova/job` caps each job at one run at a time;
    `nova/warehouse` lets the local instance run warehouse jobs one at a time (an embedded chdb
    store opens in one process only); `dagster/priority` orders the queue. Without a job (a run
    of several jobs' assets), the warehouse and runtime tags alone."""
    tags = {WAREHOUSE_TAG: "clickhouse", MAX_RUNTIME_TAG: str(max_runtime_seconds)}
    job = JOBS_BY_NAME.get(job_name or "")
    if job_name:
        tags[JOB_TAG] = job_name
    if job is not None:
        tags[PRIORITY_TAG] = str(job.priority)
    return tags


def correlation_id(tags: Mapping[str, str] | None, run_id: str | None) -> str:
    """The id that follows one failure from its first run, through run retries and re-executions
    (the root run) and every replay (the tag), to its DLQ message. Logs, DLQ messages and
    replays all take it from here."""
    tags = tags or {}
    return tags.get(CORRELATION_TAG) or tags.get(ROOT_RUN_TAG) or run_id or "-"
