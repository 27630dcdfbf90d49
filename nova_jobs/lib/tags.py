"""Run tags shared by every Nova job. The run coordinator limits runs by these (see dagster.yaml)
and adds them to runs launched outside Nova's jobs (nova_jobs/lib/run_coordinator.py)."""

JOB_TAG = "nova/job"
WAREHOUSE_TAG = "nova/warehouse"
MAX_RUNTIME_TAG = "dagster/max_runtime"

# A run still going after this long is failed by run monitoring. It is also how a run whose
# worker process died is noticed under the default run launcher, which cannot probe workers.
DEFAULT_MAX_RUNTIME_SECONDS = 1800


def job_tags(job_name: str, max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS) -> dict[str, str]:
    # `nova/job` caps each job at one run at a time; `nova/warehouse` lets the local instance
    # run warehouse jobs one at a time, since an embedded chdb store opens in one process only.
    return {
        JOB_TAG: job_name,
        WAREHOUSE_TAG: "clickhouse",
        MAX_RUNTIME_TAG: str(max_runtime_seconds),
    }
