"""The local instance config and `make dev` (`nova-jobs dev`) end to end."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psutil
import pytest
import redis as redis_lib

from nova_jobs.lib.settings import SettingError
from nova_jobs_dev.localstack import default_signals, free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("max_jobs, expected", [(None, 5), ("3", 3)])
def test_local_instance_limits_concurrency(project_root, tmp_path, monkeypatch, max_jobs, expected):
    """`DAGSTER_HOME=$PWD dagster dev` loads dagster.yaml as it is: MAX_CONCURRENT_JOBS is
    optional (5 runs at once, the README's default) and changes the limit when set."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(project_root / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.delenv("MAX_CONCURRENT_JOBS", raising=False)
    if max_jobs is not None:
        monkeypatch.setenv("MAX_CONCURRENT_JOBS", max_jobs)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        # Still Dagster's queue: the daemon dequeues only for a QueuedRunCoordinator.
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == expected
        limits = {limit["key"]: limit for limit in coordinator.get_run_queue_config().tag_concurrency_limits}
        assert limits["nova/job"]["limit"] == 1
        assert limits["nova/job"]["value"] == {"applyLimitPerUniqueValue": True}
        assert limits["nova/warehouse"]["limit"] == 1
        # One run per job's pool, whoever launched it; a runtime limit for runs without the tag.
        pools = instance.get_concurrency_config().pool_config
        assert (pools.default_pool_limit, pools.pool_granularity.value) == (1, "run")
        assert instance.run_monitoring_max_runtime_seconds == 1800


def test_a_bad_max_concurrent_jobs_names_the_setting(project_root, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(project_root / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "five")
    with pytest.raises(SettingError, match="MAX_CONCURRENT_JOBS='five' is not a whole number"):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.run_coordinator  # noqa: B018 - built on first use


def test_every_job_carries_the_limited_tags():
    from nova_jobs.definitions import defs

    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        assert int(job.tags["dagster/max_runtime"]) > 0, job.name
        if "nova/operator_action" in job.tags:
            # DLQ requests only publish to Kafka: they never wait behind warehouse runs.
            assert "nova/warehouse" not in job.tags, job.name
            continue
        assert job.tags.get("nova/job") == job.name, job.name
        assert job.tags.get("nova/warehouse") == "clickhouse", job.name
        assert int(job.tags["dagster/max_runtime"]) > 0, job.name


class DevStack:
    """`nova-jobs dev` in a subprocess, as a user runs it; its settings read from `stack.env`."""

    def __init__(self, tmp_path: Path, project_root: Path, name: str, *extra: str):
        self.state = tmp_path / "state"
        self.log_path = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "REDIS_URL", "KAFKA_BROKERS",
                                                                 "DAGSTER_HOME", "CLICKHOUSE_DATABASE")}
        env["NOVA_DLQ_REPLAY_COOLDOWN_SECONDS"] = "0"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "nova-jobs"), "dev", "--state-dir", str(self.state),
             "--port", str(free_port()), "--exporter-port", str(free_port()), "--demo-users", "2000", *extra],
            cwd=project_root, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=default_signals,
        )
        self.settings: dict[str, str] = {}

    def tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def wait_up(self, timeout: float = 240) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        stack_env = self.state / "stack.env"
        while time.monotonic() < deadline and not stack_env.exists():
            assert self.process.poll() is None, self.tail()
            time.sleep(1)
        assert stack_env.exists(), self.tail()
        for line in stack_env.read_text().splitlines():
            if line.startswith("export "):
                name, value = line.removeprefix("export ").split("=", 1)
                self.settings[name] = value
        return self.settings

    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.settings["REDIS_URL"], decode_responses=True)

    def stop(self) -> list[psutil.Process]:
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.commands = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                self.commands.append(" ".join(child.cmdline()))
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(90)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.log.close()
        return children


def publish_dlq_failure(brokers: str) -> str:
    from nova_jobs.deadletter.kafka_io import publish_json
    from nova_jobs.deadletter.message import DLQ_TOPIC, DlqMessage
    from nova_jobs.lib.timing import iso_z
    from nova_jobs.resources.kafka import KafkaResource

    # A snapshot of an hour a day ago: no schedule runs that partition again, so the sensor's
    # decision is a replay. (A trending_1h failure would be superseded, not replayed, whenever
    # the next scheduled trending_1h succeeds before the sensor's tick: a race under load.)
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    hour = (now - timedelta(hours=24)).strftime("%Y-%m-%d-%H:00")
    message = DlqMessage(job_name="trending_history", error="[Errno 111] Connection refused",
                         error_class="ConnectionRefusedError", kind="transient", timestamp=iso_z(now),
                         retry_count=3, correlation_id=run_id, run_id=run_id, partition_key=hour)
    publish_json(KafkaResource(brokers=brokers), DLQ_TOPIC, [(message.job_name, message.to_dict())])
    return run_id


def wait_for_replay(brokers: str, run_id: str, stack: DevStack, timeout: float = 150) -> dict:
    """The replay sensor's decision about the failed run `run_id`, from topic jobs-dlq-replay."""
    from nova_jobs.deadletter.kafka_io import read_topics
    from nova_jobs.deadletter.message import CONTROL_TOPIC
    from nova_jobs.resources.kafka import KafkaResource

    kafka = KafkaResource(brokers=brokers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.process.poll() is None, stack.tail()
        records, _ = read_topics(kafka, [CONTROL_TOPIC], max_records=100_000, deadline_seconds=10)
        for record in records:
            data = json.loads(record.value or b"{}")
            if data.get("type") == "decision" and data.get("run_id") == run_id and data.get("state") == "replayed":
                return data
        time.sleep(3)
    raise AssertionError(f"no replay of {run_id} after {timeout:.0f} s\n{stack.tail()}")


@pytest.mark.slow
def test_make_dev_restarts_with_its_caches_and_replays_what_fails_after(tmp_path, project_root):
    """What a new user sees across a restart: the caches appear in Redis, Ctrl-C stops it all, the
    next `make dev` still has them, and a failure published after the restart is replayed (the new
    broker is empty; the replay sensor's stored offsets must not make it blind)."""
    first = DevStack(tmp_path, project_root, "first")
    try:
        settings = first.wait_up()
        assert {"DAGSTER_HOME", "REDIS_URL", "KAFKA_BROKERS"} <= set(settings), settings
        found: dict[str, list] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(found) < 3:
            assert first.process.poll() is None, first.tail()
            for window in ("1h", "24h", "7d"):
                value = first.redis().get(f"nova:cache:trending:{window}")
                if value is not None:
                    found[window] = json.loads(value)
            time.sleep(2)
        assert set(found) == {"1h", "24h", "7d"}, first.tail()
        assert all(len(items) > 0 for items in found.values())
        # The sensor reads a failure on this broker, so its cursor moves past offset 0.
        wait_for_replay(settings["KAFKA_BROKERS"], publish_dlq_failure(settings["KAFKA_BROKERS"]), first)
        cached_7d = first.redis().get("nova:cache:trending:7d:meta")
    finally:
        children = first.stop()
    assert first.process.returncode == 0, first.tail()
    assert any("dagster" in command for command in first.commands)
    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    assert not (first.state / "stack.env").exists()

    second = DevStack(tmp_path, project_root, "second", "--no-bootstrap")
    try:
        settings = second.wait_up()
        # Redis saved on shutdown and loaded its dump: the caches are there before any run.
        assert second.redis().get("nova:cache:trending:7d:meta") == cached_7d
        assert json.loads(second.redis().get("nova:cache:trending:7d")) == found["7d"]
        wait_for_replay(settings["KAFKA_BROKERS"], publish_dlq_failure(settings["KAFKA_BROKERS"]), second)
    finally:
        second.stop()
    assert second.process.returncode == 0, second.tail()
    # One line per run event at most: the terminal shows no Dagster console twins or warnings.
    terminal = second.log_path.read_text()
    assert "BetaWarning" not in terminal and "SupersessionWarning" not in terminal, terminal[-3000:]


def test_local_redis_keeps_its_data_across_a_restart(tmp_path):
    """`make dev`'s Redis persists in its data dir, so the caches survive a restart."""
    from nova_jobs_dev.localstack import redis_process

    with redis_process(data_dir=tmp_path / "redis", persist=True) as server:
        client = redis_lib.Redis(port=server.port, decode_responses=True)
        assert client.config_get("save")["save"] == "60 1"
        client.set("nova:cache:trending:1h", "[]")
    with redis_process(data_dir=tmp_path / "redis", persist=True) as server:
        assert redis_lib.Redis(port=server.port, decode_responses=True).get("nova:cache:trending:1h") == "[]"
