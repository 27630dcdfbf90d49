"""Run tags shared by every Nova job. The run coordinator limits runs by these (see dagster.yaml)."""

WAREHOUSE_TAG = "nova/warehouse"

# A run still going after this long is failed by run monitoring. It is also how a run whose
# worker process died is noticed under the default run launcher, which cannot probe workers.
DEFAULT_MAX_RUNTIME_SECONDS = 1800


def job_tags(job_name: str, max_runtime_seconds: int = DEFAULT_MAX_RUNTIME_SECONDS) -> dict[str, str]:
    # `nova/job` caps each job at one run at a time; `nova/warehouse` lets the local instance
    # run warehouse jobs one at a time, since an embedded chdb store opens in one process only.
    return {
        "nova/job": job_name,
        WAREHOUSE_TAG: "clickhouse",
        "dagster/max_runtime": str(max_runtime_seconds),
    }
