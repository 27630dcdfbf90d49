"""Where a run's steps execute, chosen per deployment by `NOVA_EXECUTOR`.

- `in_process` (default): every step in the run's process. Right for the embedded chdb store,
  which one process at a time can open.
- `multiprocess`: a process per step, for a ClickHouse server on one machine.
- `k8s`: a Kubernetes Job per step (suggestion shards on their own pods); production.
"""

import os

import dagster as dg

from nova_jobs.lib.settings import SettingError

EXECUTORS = ("in_process", "multiprocess", "k8s")


def executor_for_deployment() -> dg.ExecutorDefinition:
    # Read when the code location loads: the executor is a property of the deployment, like
    # the instance it runs against, not of a run.
    name = os.environ.get("NOVA_EXECUTOR", "in_process").strip() or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise SettingError(f"NOVA_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")
