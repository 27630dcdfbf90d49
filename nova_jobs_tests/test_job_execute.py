"""`dagster job execute -m nova_jobs.definitions -j NAME` given only the contract's environment,
in a fresh process with its own embedded store, exactly as an operator runs a job by hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def contract_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
        "REDIS_URL": os.environ["REDIS_URL"],
        "KAFKA_BROKERS": "127.0.0.1:9",  # not used by the trending jobs
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture
def demo_store(tmp_path: Path, redis_url: str, project_root: Path) -> dict[str, str]:
    env = contract_env(tmp_path)
    loaded = run([str(BIN / "nova-jobs"), "load-demo", "--users", "2000"], env, project_root)
    assert loaded.returncode == 0, loaded.stderr
    return env


def test_trending_job_runs_whole_from_the_cli(demo_store, redis_client, project_root):
    result = run([str(BIN / "dagster"), "job", "execute", "-m", "nova_jobs.definitions", "-j", "trending_1h"],
                 demo_store, project_root)
    assert result.returncode == 0, result.stderr[-3000:]
    items = json.loads(redis_client.get("nova:cache:trending:1h"))
    meta = json.loads(redis_client.get("nova:cache:trending:1h:meta"))
    assert 0 < len(items) <= 50
    assert meta["count"] == len(items) and meta["scoring"] == "decayed"
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"TRENDING_SCORING": "popularity"}, "TRENDING_SCORING"),
        ({"TRENDING_TOPK": "-5"}, "TRENDING_TOPK"),
        ({"CLICKHOUSE_URL": "clickhouse://nowhere"}, "CLICKHOUSE_URL"),
        ({"CLICKHOUSE_URL": "chdb://relative/path"}, "CLICKHOUSE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:notaport"}, "REDIS_URL"),
    ],
)
def test_bad_configuration_fails_with_a_message_naming_the_setting(tmp_path, redis_url, redis_client, project_root,
                                                                    override, named):
    env = contract_env(tmp_path, **override)
    result = run([str(BIN / "dagster"), "job", "execute", "-m", "nova_jobs.definitions", "-j", "trending_1h"],
                 env, project_root)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert "STEP_UP_FOR_RETRY" not in result.stdout + result.stderr  # permanent: no retries
    assert redis_client.get("nova:cache:trending:1h") is None


def test_unknown_executor_fails_the_run_naming_the_setting(tmp_path, redis_url, project_root):
    env = contract_env(tmp_path, NOVA_EXECUTOR="spaceship")
    result = run([str(BIN / "dagster"), "job", "execute", "-m", "nova_jobs.definitions", "-j", "trending_1h"],
                 env, project_root)
    assert result.returncode != 0
    assert "NOVA_EXECUTOR" in result.stderr


def test_embedded_store_waits_for_the_process_holding_it(tmp_path):
    """A second process opening a chdb store waits for the first to let go instead of failing,
    and fails with the engine's error once its wait is over."""
    url = f"chdb://{tmp_path / 'store'}"
    # The holder lets go only when told, so a slow start of the other processes cannot race it.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from nova_jobs.resources.clickhouse import ClickHouseResource\n"
        f"with ClickHouseResource(url={url!r}).get_client() as c:\n"
        "    c.command('CREATE DATABASE IF NOT EXISTS nova')\n"
        "    print('holding', flush=True)\n"
        "    sys.stdin.readline()\n"
    )], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    opener = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from nova_jobs.resources.clickhouse import ClickHouseResource\n"
        f"r = ClickHouseResource(url={url!r}, lock_wait_seconds=float(sys.argv[1]))\n"
        "with r.get_client() as c:\n"
        "    print(c.query('SELECT count() FROM system.databases WHERE name = \\'nova\\'').result_rows[0][0])\n"
    )
    impatient = subprocess.run([sys.executable, "-c", opener, "0.5"], capture_output=True, text=True, timeout=60)
    patient = subprocess.Popen([sys.executable, "-c", opener, "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    # Release the store only once the patient opener has met the lock and said it waits.
    waited = ""
    while "held by another process; waiting" not in waited:
        line = patient.stderr.readline()
        assert line, f"the patient opener ended without waiting: {waited}"
        waited += line
    holder.stdin.close()
    holder.wait(30)
    patient_out, patient_err = patient.communicate(timeout=90)
    assert impatient.returncode != 0 and "EmbeddedServer" in impatient.stderr
    assert patient.returncode == 0, waited + patient_err
    assert patient_out.strip() == "1"
