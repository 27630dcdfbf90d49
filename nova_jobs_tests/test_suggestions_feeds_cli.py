"""`dagster job execute` runs suggested_users (every shard) and cache_warmer whole, given only
the environment, against their own embedded store and the session's redis-server."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def job_env(tmp_path, redis_url, project_root):
    store = tmp_path / "store"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "CLICKHOUSE_URL": f"chdb://{store}",
        "CLICKHOUSE_DATABASE": "nova",
        "REDIS_URL": redis_url,
        "KAFKA_BROKERS": "127.0.0.1:1",
        "DAGSTER_HOME": str(home),
        "SUGGESTION_SHARDS": "3",
    }
    # The data is loaded by another process: this one holds the session's store.
    subprocess.run(
        [sys.executable, "-m", "nova_jobs.cli", "load-demo", "--users", "400", "--seed", "5"],
        env=env, cwd=project_root, check=True, capture_output=True, timeout=120,
    )
    return env


def execute(job: str, env: dict, project_root) -> None:
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    done = subprocess.run(
        [dagster, "job", "execute", "-m", "nova_jobs.definitions", "-j", job],
        env=env, cwd=project_root, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def latest_metadata(env: dict, key: list[str]) -> dict:
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    finally:
        del os.environ["DAGSTER_HOME"]


def test_jobs_run_whole_from_the_cli(job_env, project_root, redis_client):
    execute("suggested_users", job_env, project_root)
    metadata = latest_metadata(job_env, ["cache", "suggested_users"])
    keys = redis_client.keys("nova:cache:suggested_users:*")
    assert metadata["shards"] == 3
    assert len(keys) == metadata["users"] == metadata["keys_written"] > 100
    for key in keys[:50]:
        items = json.loads(redis_client.get(key))
        assert len(items) == 20
        assert all(item["reason"] in ("mutual", "popular") for item in items)

    execute("cache_warmer", job_env, project_root)
    metadata = latest_metadata(job_env, ["cache", "feeds"])
    feeds = redis_client.keys("nova:cache:feed:*")
    assert len(feeds) == metadata["target_users"] == min(1000, metadata["target_users"]) > 100
    assert metadata["warmed"] + metadata["skipped"] == len(feeds)
    assert metadata["followed"] > 0
    assert all(0 < redis_client.ttl(key) <= 130 for key in feeds[:50])
