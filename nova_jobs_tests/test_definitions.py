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
        # a policy the daemon evaluates, so every extra step here costs each refresh its start-up time.
        "job_steps": {
            job.name: sorted(job.graph.node_names()) for job in repo.get_all_jobs() if not job.name.startswith("__")
        },
        # The pools a run of each job holds: one run per job, however it was launched.
        "job_pools": {
            job.name: sorted({op.pool for op in job.graph.iterate_op_defs() if op.pool})
            for job in repo.get_all_jobs() if not job.name.startswith("__")
        },
        # Lineage the UI draws: warehouse tables to caches, trending to feeds.
        "asset_deps": {
            key.to_user_string(): sorted(parent.to_user_string() for parent in repo.asset_graph.get(key).parent_keys)
            for key in repo.asset_graph.get_all_asset_keys() if repo.asset_graph.get(key).parent_keys
        },
        "freshness_windows_seconds": {
            key.to_user_string(): [policy.fail_window.to_timedelta().total_seconds(),
                                   policy.warn_window.to_timedelta().total_seconds()]
            for key in repo.asset_graph.get_all_asset_keys()
            if (policy := repo.asset_graph.get(key).freshness_policy) is not None
        },
        "job_priority": {
            job.name: job.tags.get("dagster/priority") for job in repo.get_all_jobs() if not job.name.startswith("__")
        },
        "op_retries": {
            job.name: {op.name: [op.retry_policy.max_retries, op.retry_policy.delay]
                       for op in job.graph.iterate_op_defs() if op.retry_policy}
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


def test_retries_end_well_before_the_next_schedule_and_the_documented_delays_are_dagsters():
    """An every-minute job must not still be retrying when its next run is due: the waits of
    all its retries, with the most jitter, stay under half its interval. The README's delays
    are what Dagster really waits (`RetryPolicy.calculate_delay`), not 2^n."""
    from nova_jobs.catalog import CACHE_JOBS, TRENDING_1H

    for job in CACHE_JOBS:
        policy = job.retries.policy
        assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS
        without_jitter = dg.RetryPolicy(max_retries=policy.max_retries, delay=policy.delay, backoff=policy.backoff)
        dagster_delays = [without_jitter.calculate_delay(n) for n in range(1, policy.max_retries + 1)]
        assert job.retries.delays == dagster_delays, job.name
        # PLUS_MINUS jitter moves each wait by up to `delay` either way.
        longest = [policy.calculate_delay(n) for n in range(1, policy.max_retries + 1) for _ in range(50)]
        assert max(longest) <= max(dagster_delays) + policy.delay
        worst_wait = sum(dagster_delays) + policy.max_retries * policy.delay
        assert worst_wait < job.interval.total_seconds() / 2, (job.name, worst_wait)
    assert TRENDING_1H.retries.delays == [2, 6]
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| 2, 6 s |" in readme and "2, 4, 8, 16 s" not in readme


def test_the_every_minute_caches_run_first_when_the_queue_is_full():
    priorities = {name: int(value) for name, value in surface()["job_priority"].items() if value is not None}
    first = {name for name, value in priorities.items() if value == max(priorities.values())}
    assert first == {"trending_1h", "cache_warmer"}
    assert priorities["trending_24h"] > priorities["suggested_users"] > priorities["trending_history"]


def test_every_declared_job_is_built_from_its_declaration():
    """The catalog is the one place a job's facts live: each declared job exists with its cron,
    asset, tags, pool and retries, and no Nova job exists without a declaration."""
    from nova_jobs.catalog import ALL_JOBS, CACHE_JOBS
    from nova_jobs.definitions import defs
    from nova_jobs.observability.jobs import JOB_INTERVALS

    repo = defs.get_repository_def()
    declared = {job.name for job in ALL_JOBS}
    operator_jobs = {"dlq_replay", "dlq_discard"}
    assert {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")} == declared | operator_jobs
    schedules = {schedule.job_name: schedule for schedule in repo.schedule_defs}
    for job in ALL_JOBS:
        built = repo.get_job(job.name)
        assert built.tags["nova/job"] == job.name and built.tags["dagster/priority"] == str(job.priority)
        if job.cron:
            assert schedules[job.name].cron_schedule == job.cron
        ops = list(built.graph.iterate_op_defs())
        assert {op.pool for op in ops if op.pool} == {job.pool}, job.name
        for op in ops:
            if op.retry_policy is not None:
                assert (op.retry_policy.max_retries, op.retry_policy.delay) == (
                    job.retries.max_retries, job.retries.delay_seconds), (job.name, op.name)
    for job in CACHE_JOBS:
        assert job.asset_key in repo.get_job(job.name).asset_layer.selected_asset_keys
        assert JOB_INTERVALS[job.name] == job.interval.total_seconds()
        metadata = repo.asset_graph.get(job.asset_key).metadata
        assert job.redis_key in (metadata.get("redis_key"), metadata.get("redis_key_pattern")), job.name
