"""With `dagster-daemon` running for real and runs launched through the GraphQL API the UI
uses: a "Materialize" that fails reaches jobs-dlq under its Nova job with its partition; a
backfill (one run of a range, and several runs) and a re-execution carry Nova's tags and pool;
no two warehouse runs ever overlap; the exporter's ledger counts them all as `trending_history`."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION, LAUNCH_PIPELINE_REEXECUTION_MUTATION
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql, infer_repository, materialize_assets

from nova_jobs.deadletter.kafka_io import read_topics
from nova_jobs.cli import main as cli_main
from nova_jobs.deadletter.message import DLQ_TOPIC
from nova_jobs.lib.tags import REPLAY_OF_TAG
from nova_jobs.catalog import CACHE_JOBS, TRENDING_1H
from nova_jobs.observability.freshness import freshness_states
from nova_jobs.observability.health import health_report
from nova_jobs.observability.ledger import RunLedger
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_tests.test_deadletter_daemon import create_tables, daemon_stack, running_daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATABASE = "nova_ui"
HISTORY = dg.AssetKey(["warehouse", "trending_history"])
FAILED_HOUR = "2026-11-28-09:00"
SINGLE_RUN = [f"2026-11-27-{h:02d}:00" for h in range(3)]  # one run of a range
MULTI_RUN = [f"2026-11-26-{h:02d}:00" for h in range(24)] + ["2026-11-27-05:00", "2026-11-27-06:00"]  # 2 runs
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def history_runs(instance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("nova/job") == "trending_history"]


def backfill(context, partitions: list[str]) -> str:
    result = execute_dagster_graphql(context, LAUNCH_PARTITION_BACKFILL_MUTATION, variables={"backfillParams": {
        "assetSelection": [HISTORY.to_graphql_input()], "partitionNames": partitions}})
    assert result.data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", result.data
    return result.data["launchPartitionBackfill"]["backfillId"]


def test_ui_launched_runs_are_limited_dead_lettered_and_counted(project_root, tmp_path, monkeypatch):
    with daemon_stack(project_root, tmp_path) as stack:
        brokers = stack.brokers
        # The freshness daemon evaluates every second instead of every 30 s.
        env = stack.env(DATABASE, FRESHNESS_DAEMON_INTERVAL_SECONDS="1")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(project_root)
        instance = dg.DagsterInstance.get()
        with define_out_of_process_context(str(project_root / "workspace.yaml"), None, instance) as context:
            # Only what this test launches (and the sensors) runs: the schedules stay off.
            for schedule in infer_repository(context).get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)

            # Before the daemon runs: a "Materialize" of one hour, and a re-execution launched later.
            [failing] = materialize_assets(context, [HISTORY], partition_keys=[FAILED_HOUR])
            failed_run_id = failing.data["launchPipelineExecution"]["run"]["runId"]

            with running_daemon(project_root, env, tmp_path / "daemon.log") as daemon:
                # No source tables yet: the run fails for good and reaches the DLQ as trending_history.
                def dead_message():
                    records, _ = read_topics(KafkaResource(brokers=brokers), [DLQ_TOPIC])
                    return [m for r in records if (m := json.loads(r.value))["run_id"] == failed_run_id]

                [dead] = wait_for("the Materialize run in jobs-dlq", dead_message, 150, daemon)
                assert dead["job_name"] == "trending_history"
                assert dead["partition_key"] == FAILED_HOUR
                assert dead["context"]["asset_selection"] == ["warehouse/trending_history"]
                assert dead["context"]["launched_as"] == "__ASSET_JOB"

                create_tables(project_root, env)
                single = backfill(context, SINGLE_RUN)
                multi = backfill(context, MULTI_RUN)
                reexecuted = execute_dagster_graphql(context, LAUNCH_PIPELINE_REEXECUTION_MUTATION, variables={
                    "reexecutionParams": {"parentRunId": failed_run_id, "strategy": "ALL_STEPS"}})
                assert reexecuted.data["launchPipelineReexecution"]["__typename"] == "LaunchRunSuccess", reexecuted.data
                # The operator replays the dead Materialize: a run of the Nova job, same hour.
                assert cli_main(["dlq", "replay", dead["correlation_id"], "--brokers", brokers]) == 0

                def replay_finished():
                    found = instance.get_runs(filters=dg.RunsFilter(tags={REPLAY_OF_TAG: failed_run_id}))
                    return [r for r in found if r.status in FINISHED]

                [replay] = wait_for("the replay of the dead Materialize", replay_finished, 300, daemon)

                def all_finished():
                    runs = [r for r in instance.get_runs() if r.job_name == "__ASSET_JOB" and r.asset_selection]
                    by_backfill = {b: [r for r in runs if r.tags.get("dagster/backfill") == b] for b in (single, multi)}
                    if len(runs) >= 5 and len(by_backfill[multi]) == 2 and all(r.status in FINISHED for r in runs):
                        return runs
                    return None

                runs = wait_for("the backfills and the re-execution to finish", all_finished, 300, daemon)

                # Freshness, as the daemon judges the caches' policies: trending_1h was just
                # refreshed, the other caches never were (pending, not failing).
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=TRENDING_1H.asset_key))

                def freshness_recorded():
                    states = freshness_states(instance)
                    return states if states.get("trending_1h") == "PASS" and len(states) == len(CACHE_JOBS) else None

                states = wait_for("the freshness daemon's states", freshness_recorded, 120, daemon)

        assert replay.status == dg.DagsterRunStatus.SUCCESS
        assert (replay.job_name, replay.tags["dagster/partition"]) == ("trending_history", FAILED_HOUR)
        by_backfill = {b: [r for r in runs if r.tags.get("dagster/backfill") == b] for b in (single, multi)}
        [single_run] = by_backfill[single]
        assert (single_run.tags["dagster/asset_partition_range_start"],
                single_run.tags["dagster/asset_partition_range_end"]) == (SINGLE_RUN[0], SINGLE_RUN[-1])
        for run in runs:
            assert run.tags["nova/job"] == "trending_history"
            assert run.tags["nova/warehouse"] == "clickhouse"
            assert run.tags["dagster/max_runtime"] == "1800"
            assert set(run.run_op_concurrency.all_pools) == {"nova_job.trending_history"}
            if run.run_id != failed_run_id:
                assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id

        # Warehouse runs take turns: no two of them overlapped, whoever launched them.
        records = [r for r in instance.get_run_records() if r.dagster_run.tags.get("nova/warehouse")]
        spans = sorted((r.start_time, r.end_time) for r in records if r.start_time and r.end_time)
        assert len(spans) >= 5
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, "two warehouse runs overlapped"

        assert {name: state for name, state in states.items() if name != "trending_1h"} == dict.fromkeys(
            ["trending_24h", "trending_7d", "suggested_users", "cache_warmer"], "UNKNOWN")

        ledger = RunLedger(instance)
        ledger.refresh()
        _, health = health_report(ledger)
        assert health["jobs"]["trending_1h"]["freshness"] == "PASS"
        assert health["jobs"]["cache_warmer"]["freshness"] == "UNKNOWN"
        stats = ledger.jobs["trending_history"]
        # Every run above: the backfills, the re-execution and the replay succeeded, the first failed.
        assert stats.runs["success"] == len(runs)
        assert stats.runs["failure"] == 1
        assert stats.dlq_messages == 1
        assert len(history_runs(instance)) == len(runs) + 1
