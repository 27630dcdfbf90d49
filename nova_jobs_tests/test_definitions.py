"""The code location loads, and its public surface (asset keys, checks, jobs and their steps,
crons, sensors) changes only on purpose: the Nova API and operators depend on these names.

After an intended change: NOVA_UPDATE_SNAPSHOTS=1 pytest nova_jobs_tests/test_definitions.py
"""

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"

CONTRACT_JOBS = {"trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer"}


def surface() -> dict:
    from nova_jobs.definitions import defs

    repo = defs.get_repository_def()
    return {
        "assets": sorted(key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()),
        "asset_checks": sorted(
            f"{key.asset_key.to_user_string()}:{key.name}" for key in repo.asset_graph.asset_check_keys
        ),
        "jobs": sorted(job.name for job in repo.get_all_jobs() if not job.name.startswith("__")),
        "schedules": {
            schedule.name: {"job": schedule.job_name, "cron": schedule.cron_schedule,
                            "timezone": schedule.execution_timezone,
                            "default_status": schedule.default_status.value}
            for schedule in repo.schedule_defs
        },
        "sensors": {sensor.name: sensor.default_status.value for sensor in repo.sensor_defs},
        # The steps of each run: a cache job checks its values in its own step, and freshness is
        # left to its sensor, so every extra step here costs each refresh its start-up time.
        "job_steps": {
            job.name: sorted(job.graph.node_names()) for job in repo.get_all_jobs() if not job.name.startswith("__")
        },
        # The pools a run of each job holds: one run per job, however it was launched.
        "job_pools": {
            job.name: sorted({op.pool for op in job.graph.iterate_op_defs() if op.pool})
            for job in repo.get_all_jobs() if not job.name.startswith("__")
        },
    }


def test_definitions_load_and_match_the_snapshot():
    current = surface()
    if os.environ.get("NOVA_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_contract_jobs_run_on_the_contract_crons():
    schedules = {s["job"]: s["cron"] for s in surface()["schedules"].values()}
    assert CONTRACT_JOBS <= set(schedules)
    assert schedules["trending_1h"] == "* * * * *"
    assert schedules["trending_24h"] == "*/5 * * * *"
    assert schedules["trending_7d"] == "0 * * * *"
    assert schedules["suggested_users"] == "*/10 * * * *"
    assert schedules["cache_warmer"] == "* * * * *"


def test_every_step_that_touches_a_store_retries_with_exponential_backoff():
    from nova_jobs.definitions import defs

    checked = set()
    for assets_def in defs.get_repository_def().asset_graph.assets_defs:
        if not assets_def.is_executable:
            continue  # external assets (kafka/jobs_dlq) have no steps
        node_def = assets_def.node_def
        ops = node_def.iterate_op_defs() if isinstance(node_def, dg.GraphDefinition) else [node_def]
        for op in ops:
            if not op.required_resource_keys & {"clickhouse", "redis"}:
                continue
            assert op.retry_policy is not None, op.name
            assert op.retry_policy.backoff == dg.Backoff.EXPONENTIAL, op.name
            assert op.retry_policy.jitter is not None, op.name
            checked.add(op.name)
    assert {"cache__trending_1h", "cache__feeds", "warehouse__trending_history"} <= checked
    assert any(name.startswith("suggestions_shard") for name in checked)
