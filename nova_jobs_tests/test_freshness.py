"""Freshness as Dagster 1.13 expresses it: every cache asset carries a FreshnessPolicy derived
from its job's declared interval, and the local instance runs the daemon that evaluates them.
(The daemon's states on a real `dagster-daemon`, and /health/jobs showing them, are checked in
test_ui_launches_daemon.py.)"""

import shutil
from datetime import timedelta

import dagster as dg

from nova_jobs.catalog import CACHE_JOBS
from nova_jobs.definitions import defs


def test_every_cache_warns_after_one_and_a_half_intervals_and_fails_after_two():
    graph = defs.resolve_asset_graph()
    cache_keys = {job.asset_key for job in CACHE_JOBS}
    for job in CACHE_JOBS:
        policy = graph.get(job.asset_key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), job.name
        assert policy.fail_window.to_timedelta() == 2 * job.interval, job.name
        assert policy.warn_window.to_timedelta() == 1.5 * job.interval, job.name
    # The every-minute caches fail after two minutes without a refresh.
    assert {job.name for job in CACHE_JOBS if job.interval == timedelta(minutes=1)} == {"trending_1h", "cache_warmer"}
    # Nothing else has one: the warehouse tables are not ours to keep fresh.
    for key in graph.get_all_asset_keys() - cache_keys:
        assert graph.get(key).freshness_policy is None, key


def test_the_local_instance_runs_the_freshness_daemon_with_no_variable_set(project_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MAX_CONCURRENT_JOBS", raising=False)
    shutil.copy(project_root / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.freshness_enabled
        assert "FRESHNESS_DAEMON" in instance.get_required_daemon_types()
