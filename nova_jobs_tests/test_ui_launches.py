"""Runs launched the way the UI launches them (a "Materialize" of a selection, a backfill, a
re-execution: Dagster's `__ASSET_JOB`) get what scheduled runs get: Nova's run tags, the job's
pool, a DLQ message that names the Nova job and what the run covered, and metrics under the
Nova job's name."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    execute_dagster_graphql,
    infer_job_selector,
    materialize_assets,
)

from nova_jobs.deadletter.message import build_message
from nova_jobs.definitions import defs
from nova_jobs.catalog import ASSET_JOBS, JOBS_BY_NAME
from nova_jobs.observability.ledger import RunLedger
from nova_jobs.trending.history import trending_history

pytestmark = pytest.mark.integration

RANGE = {"dagster/asset_partition_range_start": "2026-11-28-10:00",
         "dagster/asset_partition_range_end": "2026-11-28-12:00"}


def local_instance_config(project_root: Path) -> dict:
    return yaml.safe_load((project_root / "dagster.yaml").read_text())


def test_every_asset_of_a_nova_job_is_mapped_to_it_and_pooled_by_it():
    repo = defs.get_repository_def()
    found = {}
    for job in repo.get_all_jobs():
        if job.name.startswith("__"):
            continue
        for key in job.asset_layer.selected_asset_keys:
            found[key.to_user_string()] = job.name
    assert found == ASSET_JOBS
    for assets_def in repo.assets_defs_by_key.values():
        if not assets_def.is_executable:
            continue  # observed only (kafka/jobs_dlq): no step, no pool
        for key in assets_def.keys:
            pools = {node.pool for node in assets_def.node_def.iterate_op_defs()} if hasattr(
                assets_def.node_def, "iterate_op_defs") else {assets_def.op.pool}
            if key.to_user_string() in ASSET_JOBS:
                assert pools == {JOBS_BY_NAME[ASSET_JOBS[key.to_user_string()]].pool}, key


def test_materialize_from_the_ui_is_tagged_and_pooled_like_the_job(project_root, monkeypatch):
    """The UI's "Materialize" is `launchPipelineExecution` on `__ASSET_JOB` with a selection."""
    monkeypatch.chdir(project_root)
    # Resources resolve their environment when the run is launched; nothing connects here.
    monkeypatch.setenv("CLICKHOUSE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("KAFKA_BROKERS", "127.0.0.1:9")
    with dg.instance_for_test(overrides=local_instance_config(project_root)) as instance:
        with define_out_of_process_context(str(project_root / "workspace.yaml"), None, instance) as context:
            result = materialize_assets(context, [dg.AssetKey(["cache", "trending_1h"])])
            assert result.data["launchPipelineExecution"]["__typename"] == "LaunchRunSuccess", result.data
            run_id = result.data["launchPipelineExecution"]["run"]["runId"]
            run = instance.get_run_by_id(run_id)
            assert run.job_name == "__ASSET_JOB"
            # Queued (no daemon here) with the tags the queue limits on and run monitoring reads.
            assert run.status == dg.DagsterRunStatus.QUEUED
            assert run.tags["nova/job"] == "trending_1h"
            assert run.tags["nova/warehouse"] == "clickhouse"
            assert run.tags["dagster/max_runtime"] == "1800"
            assert set(run.run_op_concurrency.all_pools) == {"nova_job.trending_1h"}
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


ROOT_DEFAULT_YAML = """query($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) { ... on RunConfigSchema { rootDefaultYaml } } }"""


def test_the_launchpad_scaffolds_the_config_fields_with_their_defaults(project_root, monkeypatch):
    monkeypatch.chdir(project_root)
    with dg.instance_for_test() as instance:
        with define_out_of_process_context(str(project_root / "workspace.yaml"), None, instance) as context:
            defaults = {}
            for job in ("trending_1h", "trending_history"):
                result = execute_dagster_graphql(context, ROOT_DEFAULT_YAML,
                                                 variables={"selector": infer_job_selector(context, job)})
                defaults[job] = yaml.safe_load(result.data["runConfigSchemaOrError"]["rootDefaultYaml"])
    assert defaults["trending_1h"]["ops"]["cache__trending_1h"]["config"] == {"scoring": "decayed", "top_k": 50}
    history = defaults["trending_history"]["ops"]["warehouse__trending_history"]["config"]
    assert (history["scoring"], history["top_k"]) == ("decayed", 50)


def test_a_field_left_at_its_default_keeps_the_environment_variable(clickhouse, redis_url, redis_client, monkeypatch):
    monkeypatch.setenv("TRENDING_SCORING", "seed")
    # What the launchpad submits when the user changes nothing.
    result = defs.resolve_job_def("trending_1h").execute_in_process(
        run_config={"ops": {"cache__trending_1h": {"config": {"scoring": "decayed", "top_k": 50}}}})
    assert result.success
    assert json.loads(redis_client.get("nova:cache:trending:1h:meta"))["scoring"] == "seed"


def test_scheduled_job_run_keeps_its_own_tags(project_root, clickhouse, redis_url):
    with dg.instance_for_test(overrides=local_instance_config(project_root)) as instance:
        job = defs.resolve_job_def("trending_24h")
        run = instance.create_run_for_job(job, tags={**job.tags, "dagster/max_runtime": "60"})
        from nova_jobs.lib.run_coordinator import missing_nova_tags

        assert missing_nova_tags(run) == {}


def asset_job_run(instance, key: dg.AssetKey, tags: dict[str, str] | None = None):
    """A run of `__ASSET_JOB` with an asset selection: what "Materialize" and backfills create."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(asset_selection=[key], instance=instance, tags=tags, raise_on_error=False)


def failed_history_backfill_run(instance, tags, monkeypatch):
    # Nothing listens there: the history step fails (a broken warehouse).
    monkeypatch.setenv("CLICKHOUSE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("CLICKHOUSE_TIMEOUT_MS", "200")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    return asset_job_run(instance, trending_history.key, tags)


def test_dlq_message_of_a_single_run_backfill_names_the_job_and_its_range(tmp_path, monkeypatch):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = failed_history_backfill_run(instance, RANGE, monkeypatch)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        message = build_message(instance, run).to_dict()
    assert message["job_name"] == "trending_history"
    assert message["partition_key"] is None
    assert message["context"]["asset_selection"] == ["warehouse/trending_history"]
    assert message["context"]["partition_range"] == {"start": "2026-11-28-10:00", "end": "2026-11-28-12:00"}


def test_dlq_message_of_one_partition_run_carries_the_partition(tmp_path, monkeypatch):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = failed_history_backfill_run(instance, {"dagster/partition": "2026-11-28-10:00"}, monkeypatch)
        message = build_message(instance, instance.get_run_by_id(result.run_id)).to_dict()
    assert message["job_name"] == "trending_history"
    assert message["partition_key"] == "2026-11-28-10:00"
    assert "partition_range" not in message["context"]


def test_exporter_counts_materialize_runs_under_the_nova_job_not_checks_runs(clickhouse, redis_url):
    with dg.instance_for_test() as instance:
        result = asset_job_run(instance, dg.AssetKey(["cache", "trending_1h"]))
        assert result.success
        assert instance.get_run_by_id(result.run_id).job_name.startswith("__")
        ledger = RunLedger(instance)
        ledger.refresh()
    assert ledger.jobs["trending_1h"].runs["success"] == 1
    assert ledger.jobs["trending_1h"].items_processed == 0.0
    assert not [name for name in ledger.jobs if name.startswith("__")]


def test_a_bad_scoring_in_the_launchpad_names_the_run_config_field(clickhouse, redis_url):
    job = defs.resolve_job_def("trending_1h")
    with pytest.raises(dg.DagsterInvalidConfigError) as caught:
        job.execute_in_process(run_config={"ops": {"cache__trending_1h": {"config": {"scoring": "bogus"}}}})
    assert "ops:cache__trending_1h:config:scoring" in str(caught.value)
    assert "bogus" in str(caught.value)
    assert "TRENDING_SCORING" not in str(caught.value)


def test_a_bad_scoring_in_the_environment_names_the_variable(clickhouse, redis_url, monkeypatch):
    monkeypatch.setenv("TRENDING_SCORING", "bogus")
    result = defs.resolve_job_def("trending_1h").execute_in_process(raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "TRENDING_SCORING='bogus'" in str(failure.step_failure_data.error.to_string())


def test_a_scoring_in_run_config_wins_over_the_environment(clickhouse, redis_url, monkeypatch, redis_client):
    monkeypatch.setenv("TRENDING_SCORING", "decayed")
    result = defs.resolve_job_def("trending_1h").execute_in_process(
        run_config={"ops": {"cache__trending_1h": {"config": {"scoring": "seed"}}}})
    assert result.success
    assert json.loads(redis_client.get("nova:cache:trending:1h:meta"))["scoring"] == "seed"
