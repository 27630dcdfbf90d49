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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class DaemonStack:
    """Where a daemon test's servers and Dagster home are."""

    home: Path
    chdb_url: str
    redis_url: str
    brokers: str

    def env(self, database: str, **extra: str) -> dict[str, str]:
        """What the daemon and the operator's commands run with: this stack, `database`, and `extra`."""
        return {"DAGSTER_HOME": str(self.home), "CLICKHOUSE_URL": self.chdb_url, "CLICKHOUSE_DATABASE": database,
                "REDIS_URL": self.redis_url, "KAFKA_BROKERS": self.brokers, "MAX_CONCURRENT_JOBS": "5", **extra}


@contextmanager
def daemon_stack(project_root: Path, tmp_path: Path) -> Iterator[DaemonStack]:
    """A DAGSTER_HOME holding the project's dagster.yaml, a chdb store path (nothing opens it
    yet), and a redis-server and tansu broker of the test's own, stopped after."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(project_root / "dagster.yaml", home / "dagster.yaml")
    chdb_url = f"chdb://{tmp_path / 'chdb' / 'store'}"
    with redis_process(data_dir=tmp_path / "redis") as redis_server, tansu_process(log_path=tmp_path / "tansu.log") as broker:
        yield DaemonStack(home, chdb_url, f"redis://127.0.0.1:{redis_server.port}/0", f"127.0.0.1:{broker.port}")


@contextmanager
def running_daemon(project_root: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on the project's workspace, with `env` over this process's
    environment and its output in `log_path`; its process group is stopped after."""
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [str(project_root / ".venv" / "bin" / "dagster-daemon"), "run", "-w", str(project_root / "workspace.yaml")],
            cwd=project_root, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=default_signals, start_new_session=True,
        )
        try:
            yield daemon
        finally:
            stop_process_group(daemon)


def create_tables(project_root: Path, env: dict[str, str]) -> None:
    """The operator's fix: the contract's source tables in `env`'s ClickHouse database, created
    in a process of its own (one process can open one chdb path)."""
    subprocess.run([sys.executable, "-c", CREATE_TABLES, env["CLICKHOUSE_URL"], env["CLICKHOUSE_DATABASE"]],
                   check=True, cwd=project_root, env={**os.environ, **env}, timeout=150)


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
    with daemon_stack(project_root, tmp_path) as stack:
        brokers = stack.brokers
        kafka = KafkaResource(brokers=brokers)
        env = stack.env(DATABASE, NOVA_DLQ_REPLAY_COOLDOWN_SECONDS="0")
        with running_daemon(project_root, env, tmp_path / "daemon.log") as daemon:
            # The schedule's run finds no database: a permanent failure, published once.
            [dead] = wait_for("trending_1h in jobs-dlq", lambda: dead_trending_runs(kafka)[:1], 150, daemon)
            assert dead["kind"] == "permanent"
            assert dead["context"] == {"window": "1h"}
            assert DATABASE in dead["error"]

            # The operator creates the tables and asks for a replay.
            create_tables(project_root, env)
            assert cli_main(["dlq", "replay", dead["correlation_id"], "--brokers", brokers]) == 0

            instance = dg.DagsterInstance.from_config(str(stack.home))

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
