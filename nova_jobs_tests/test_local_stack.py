"""The local instance config and `make dev` (`nova-jobs dev`) end to end."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
import redis as redis_lib

from nova_jobs.localstack import default_signals, free_port

pytestmark = pytest.mark.integration


def test_local_instance_limits_concurrency(project_root, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(project_root / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "3")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        config = coordinator.inst_data.config_dict
        assert config["max_concurrent_runs"] == {"env": "MAX_CONCURRENT_JOBS"}
        assert coordinator.get_run_queue_config().max_concurrent_runs == 3
        limits = {limit["key"]: limit for limit in config["tag_concurrency_limits"]}
        assert limits["nova/job"]["limit"] == 1
        assert limits["nova/job"]["value"] == {"applyLimitPerUniqueValue": True}
        assert limits["nova/warehouse"]["limit"] == 1


def test_every_job_carries_the_limited_tags():
    from nova_jobs.definitions import defs

    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        assert job.tags.get("nova/job") == job.name, job.name
        assert job.tags.get("nova/warehouse") == "clickhouse", job.name
        assert int(job.tags["dagster/max_runtime"]) > 0, job.name


@pytest.mark.slow
def test_make_dev_fills_the_trending_caches_and_stops_cleanly(tmp_path, project_root):
    """What a new user sees: the stack starts, the caches appear in Redis, Ctrl-C stops it all."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "REDIS_URL", "KAFKA_BROKERS",
                                                             "DAGSTER_HOME", "CLICKHOUSE_DATABASE")}
    port, exporter_port = free_port(), free_port()
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115
    dev = subprocess.Popen(
        [str(Path(sys.executable).parent / "nova-jobs"), "dev", "--state-dir", str(tmp_path / "state"),
         "--port", str(port), "--exporter-port", str(exporter_port), "--demo-users", "2000"],
        cwd=project_root, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=default_signals,
    )
    children: list[psutil.Process] = []
    try:
        redis_url = None
        deadline = time.monotonic() + 240
        found: dict[str, list] = {}
        while time.monotonic() < deadline and len(found) < 3:
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            text = (tmp_path / "dev.log").read_text()
            if redis_url is None and "Redis           redis://" in text:
                redis_url = text.split("Redis           ", 1)[1].split()[0]
            if redis_url:
                client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
                for window in ("1h", "24h", "7d"):
                    value = client.get(f"nova:cache:trending:{window}")
                    if value is not None:
                        found[window] = json.loads(value)
            time.sleep(2)
        assert set(found) == {"1h", "24h", "7d"}, (tmp_path / "dev.log").read_text()[-3000:]
        assert all(len(items) > 0 for items in found.values())
        children = psutil.Process(dev.pid).children(recursive=True)
        assert any("dagster" in " ".join(c.cmdline()) for c in children)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(90)
        finally:
            if dev.poll() is None:
                dev.kill()
            log.close()
    assert dev.returncode == 0
    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]


def test_local_redis_keeps_its_data_across_a_restart(tmp_path):
    """`make dev`'s Redis persists in its data dir, so the caches survive a restart."""
    from nova_jobs.localstack import redis_process

    with redis_process(data_dir=tmp_path / "redis", persist=True) as server:
        client = redis_lib.Redis(port=server.port, decode_responses=True)
        assert client.config_get("save")["save"] == "60 1"
        client.set("nova:cache:trending:1h", "[]")
    with redis_process(data_dir=tmp_path / "redis", persist=True) as server:
        assert redis_lib.Redis(port=server.port, decode_responses=True).get("nova:cache:trending:1h") == "[]"
