"""End to end with `dagster-daemon` running for real: schedules launch trending_1h, it fails
for good (its database is missing), the failure sensor publishes it to jobs-dlq, an operator
fixes the warehouse and asks for a replay, and the replay sensor's run succeeds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import dagster as dg
import pytest

from nova_jobs.cli import main as cli_main
from nova_jobs.deadletter.kafka_io import read_topics
from nova_jobs.deadletter.message import DLQ_TOPIC
from nova_jobs.lib.tags import REPLAY_OF_TAG
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_dev.localstack import default_signals, redis_process, tansu_process
from nova_jobs_tests.conftest import stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATABASE = "nova_e2e"
CREATE_TABLES = """
import sys
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.warehouse.schema import create_source_tables
with ClickHouseResource(url=sys.argv[1], database=sys.argv[2]).get_client() as client:
    create_source_tables(client, sys.argv[2])
"""


def wait_for(what: str, check, timeout: float, daemon: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert daemon.poll() is None, "dagster-daemon exited"
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def dead_trending_runs(kafka: KafkaResource) -> list[dict]:
    records, _ = read_topics(kafka, [DLQ_TOPIC])
    found = []
    for record in records:
        data = json.loads(record.value)
        if data["job_name"] == "trending_1h":
            found.append(data)
    return found


def test_daemon_schedules_publishes_and_replays(project_root, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(project_root / "dagster.yaml", home / "dagster.yaml")
    chdb_url = f"chdb://{tmp_path / 'chdb' / 'store'}"
    with redis_process(data_dir=tmp_path / "redis") as redis_server, tansu_process(log_path=tmp_path / "tansu.log") as broker:
        brokers = f"127.0.0.1:{broker.port}"
        kafka = KafkaResource(brokers=brokers)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CLICKHOUSE_URL": chdb_url,
            "CLICKHOUSE_DATABASE": DATABASE,
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "KAFKA_BROKERS": brokers,
            "MAX_CONCURRENT_JOBS": "5",
            "NOVA_DLQ_REPLAY_COOLDOWN_SECONDS": "0",
        }
        log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen(
            [str(project_root / ".venv" / "bin" / "dagster-daemon"), "run", "-w", str(project_root / "workspace.yaml")],
            cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=default_signals, start_new_session=True,
        )
        try:
            # The schedule's run finds no database: a permanent failure, published once.
            [dead] = wait_for("trending_1h in jobs-dlq", lambda: dead_trending_runs(kafka)[:1], 150, daemon)
            assert dead["kind"] == "permanent"
            assert dead["context"] == {"window": "1h"}
            assert DATABASE in dead["error"]

            # The operator creates the tables and asks for a replay.
            subprocess.run([sys.executable, "-c", CREATE_TABLES, chdb_url, DATABASE], check=True, cwd=project_root,
                           env=env, timeout=150)
            assert cli_main(["dlq", "replay", dead["correlation_id"], "--brokers", brokers]) == 0

            instance = dg.DagsterInstance.from_config(str(home))

            def replay_succeeded():
                runs = instance.get_runs(filters=dg.RunsFilter(tags={REPLAY_OF_TAG: dead["run_id"]}))
                return [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]

            [replay] = wait_for("the replay run to succeed", replay_succeeded, 120, daemon)
            assert replay.job_name == "trending_1h"
            assert replay.tags["nova/correlation_id"] == dead["correlation_id"]
            # The failed run's message was published once, however many ticks passed.
            assert [m["run_id"] for m in dead_trending_runs(kafka)].count(dead["run_id"]) == 1
            sensor_ticks = {
                name: instance.get_ticks(state.instigator_origin_id, state.selector_id)
                for state in instance.all_instigator_state()
                if (name := state.instigator_name) in ("dlq_failure_sensor", "dlq_replay_sensor")
            }
            assert set(sensor_ticks) == {"dlq_failure_sensor", "dlq_replay_sensor"}
            assert all(sensor_ticks.values()), "both sensors tick (the UI shows these ticks)"

            def scheduled_success():
                runs = instance.get_runs(filters=dg.RunsFilter(
                    job_name="trending_1h", statuses=[dg.DagsterRunStatus.SUCCESS],
                    tags={"dagster/schedule_name": "trending_1h_schedule"}))
                return [r for r in runs if REPLAY_OF_TAG not in r.tags]

            # Once the warehouse is there, the next scheduled run succeeds too.
            wait_for("a scheduled trending_1h success", scheduled_success, 90, daemon)
        finally:
            stop_process_group(daemon)
            log.close()
