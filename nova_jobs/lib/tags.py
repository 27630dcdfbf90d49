"""Run tags shared by every Nova job. The run coordinator limits runs by these (see dagster.yaml)."""

WAREHOUSE_TAG = "nova/warehouse"


def job_tags(job_name: str) -> dict[str, str]:
    # `nova/job` caps each job at one run at a time; `nova/warehouse` lets the local instance
    # run warehouse jobs one at a time, since an embedded chdb store opens in one process only.
    return {"nova/job": job_name, WAREHOUSE_TAG: "clickhouse"}
