"""Where a run's steps execute, chosen per deployment by `NOVA_EXECUTOR`.

- `in_process` (default): every step in the run's process. Right for the embedded chdb store,
  which one process at a time can open.
- `multiprocess`: a process per step, for a ClickHouse server on one machine.
- `k8s` (production): each run is a pod (K8sRunLauncher). Light jobs (trending, feeds) run
  their steps in that pod, sized by the job's `dagster-k8s/config` tag; jobs of many heavy
  steps (the suggestion shards) give every step a Kubernetes Job of its own.
"""

import logging
import os

import dagster as dg

from nova_jobs.lib.settings import SettingError

log = logging.getLogger(__name__)

EXECUTORS = ("in_process", "multiprocess", "k8s")

# Step pods meet the Kubernetes Pod Security "restricted" profile on their own: they are Jobs
# of their own, and a namespace that enforces the profile rejects any that falls short.
# The same settings as the run pods (helm/dagster-values.yaml) and the image's user (Dockerfile).
def restricted_k8s_config(resources: dict | None = None) -> dict:
    """A `dagster-k8s/config` for a pod of its own, restricted as above, with the container's
    requests and limits when given."""
    container = {
        "security_context": {
            "allow_privilege_escalation": False,
            "capabilities": {"drop": ["ALL"]},
            "run_as_non_root": True,
            "seccomp_profile": {"type": "RuntimeDefault"},
        }
    }
    if resources:
        container["resources"] = resources
    return {
        "container_config": container,
        "pod_spec_config": {
            "security_context": {
                "run_as_non_root": True,
                "run_as_user": 10001,
                "run_as_group": 10001,
                "fs_group": 10001,
                "seccomp_profile": {"type": "RuntimeDefault"},
            }
        },
    }


STEP_K8S_CONFIG = restricted_k8s_config()


def _deployment_executor() -> tuple[str, str | None]:
    """(executor name, problem). Read when the code location loads: the executor is a property
    of the deployment, like the instance it runs against, not of a run. A bad value must not
    take the code location down (its DLQ sensors with it), so it is reported by every run."""
    name = os.environ.get("NOVA_EXECUTOR", "in_process").strip() or "in_process"
    if name not in EXECUTORS:
        return "in_process", f"NOVA_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}"
    return name, None


def _refusing_executor(problem: str) -> dg.ExecutorDefinition:
    @dg.executor(name="invalid_nova_executor")
    def refuse(init_context: dg.InitExecutorContext) -> dg.Executor:
        # Dagster records a DagsterError here as the run's failure (any other error leaves the
        # run NOT_STARTED); the SettingError behind it is the root cause the DLQ reports.
        raise dg.DagsterInvariantViolationError(problem) from SettingError(problem)

    return refuse


def executor_for_deployment() -> dg.ExecutorDefinition:
    """The default executor of every job."""
    name, problem = _deployment_executor()
    if problem is not None:
        log.warning("%s; every run will fail at launch until it is fixed", problem)
        return _refusing_executor(problem)
    if name == "multiprocess":
        return dg.multiprocess_executor
    # Under k8s too: a pod per step would start three pods a minute for a job that needs one.
    return dg.in_process_executor


def executor_for_sharded_jobs() -> dg.ExecutorDefinition | None:
    """For jobs of many heavy, parallel steps: under k8s a pod per step, else the default."""
    if _deployment_executor()[0] == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured({"step_k8s_config": STEP_K8S_CONFIG})
    return None
