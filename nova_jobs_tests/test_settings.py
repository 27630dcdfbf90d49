"""Settings resolve explicit value, then environment, then default, and name themselves in errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from nova_jobs.lib.settings import SettingError, setting_choice, setting_int


def test_explicit_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("NOVA_TEST_N", raising=False)
    assert setting_int("NOVA_TEST_N", default=7) == 7
    monkeypatch.setenv("NOVA_TEST_N", " 12 ")
    assert setting_int("NOVA_TEST_N", default=7) == 12
    assert setting_int("NOVA_TEST_N", 3, default=7) == 3
    monkeypatch.setenv("NOVA_TEST_N", "")
    assert setting_int("NOVA_TEST_N", default=7) == 7


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "NOVA_TEST_N='abc' is not a whole number"), ("-1", "NOVA_TEST_N=-1 must be at least 0"),
     ("101", "NOVA_TEST_N=101 must be at most 100")],
)
def test_bad_numbers_name_the_setting(monkeypatch, value, message):
    monkeypatch.setenv("NOVA_TEST_N", value)
    with pytest.raises(SettingError) as caught:
        setting_int("NOVA_TEST_N", default=1, minimum=0, maximum=100)
    assert str(caught.value) == message
    # Raised on its own, not while handling the parse error: the setting is the root cause.
    assert caught.value.__context__ is None


def test_choices_and_required(monkeypatch):
    with pytest.raises(SettingError, match="TRENDING_SCORING='hot' is not one of decayed, seed"):
        setting_choice("TRENDING_SCORING", ["decayed", "seed"], "hot")
    monkeypatch.delenv("NOVA_TEST_REQUIRED", raising=False)
    with pytest.raises(SettingError, match="NOVA_TEST_REQUIRED is not set"):
        setting_int("NOVA_TEST_REQUIRED")


# Settings read when the code location loads: a bad value fails the runs it affects, naming the
# setting, and leaves the location (with both DLQ sensors) up.
BIN = Path(sys.executable).parent
LIST_DEFINITIONS = (
    "from nova_jobs.definitions import defs\n"
    "import json\n"
    "print(json.dumps({'sensors': sorted(s.name for s in defs.sensors),"
    " 'jobs': sorted(j.name for j in defs.jobs)}))\n"
)


def load_time_env(tmp_path: Path, project_root: Path, **settings: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(project_root),
        "DAGSTER_HOME": str(home), "CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
        "REDIS_URL": "redis://127.0.0.1:9/0", "KAFKA_BROKERS": "127.0.0.1:9", **settings,
    }


def test_bad_load_time_settings_leave_the_code_location_and_its_dlq_sensors_up(tmp_path, project_root):
    env = load_time_env(tmp_path, project_root, SUGGESTION_SHARDS="abc", NOVA_EXECUTOR="bogus")
    loaded = subprocess.run([sys.executable, "-c", LIST_DEFINITIONS], env=env, cwd=project_root,
                            capture_output=True, text=True, timeout=180)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    listed = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert {"dlq_failure_sensor", "dlq_replay_sensor"} <= set(listed["sensors"])
    assert {"trending_1h", "suggested_users", "cache_warmer"} <= set(listed["jobs"])
    # Said once at load, so a deployment shows what to fix before any run fails.
    assert "SUGGESTION_SHARDS='abc' is not a whole number" in loaded.stderr
    assert "NOVA_EXECUTOR='bogus' is not one of in_process, multiprocess, k8s" in loaded.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("setting", "value", "job", "message"),
    [("SUGGESTION_SHARDS", "abc", "suggested_users", "SUGGESTION_SHARDS='abc' is not a whole number"),
     ("NOVA_EXECUTOR", "bogus", "trending_1h", "NOVA_EXECUTOR='bogus' is not one of in_process, multiprocess, k8s")],
)
def test_a_bad_load_time_setting_fails_the_run_naming_it(tmp_path, project_root, setting, value, job, message):
    from nova_jobs.deadletter.message import build_message

    env = load_time_env(tmp_path, project_root, **{setting: value})
    executed = subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "nova_jobs.definitions", "-j", job],
                              env=env, cwd=project_root, capture_output=True, text=True, timeout=240)
    assert executed.returncode != 0
    assert message in executed.stderr
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    [run] = instance.get_runs()
    assert run.job_name == job and run.status == dg.DagsterRunStatus.FAILURE
    # What reaches the DLQ: the setting as the root cause, permanent, never retried.
    dead = build_message(instance, run)
    assert (dead.error, dead.error_class, dead.kind, dead.retry_count) == (message, "SettingError", "permanent", 0)


def _failure_text(result) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failures[0].event_specific_data.error.message if failures else ""


@pytest.mark.parametrize(
    ("run_config", "env", "named", "not_named"),
    [
        # A value typed in the launchpad is blamed on its run-config field...
        ({"top_k": 0}, {}, "run config top_k=0 must be at least 1", "TRENDING_TOPK"),
        # ...and a deployment's bad variable on the variable, whatever the launchpad shows.
        ({}, {"TRENDING_TOPK": "0"}, "TRENDING_TOPK=0 must be at least 1", "run config"),
        ({"top_k": 20000}, {"TRENDING_TOPK": "20"}, "run config top_k=20000 must be at most 10000", "TRENDING_TOPK"),
    ],
)
def test_a_bad_value_names_the_run_config_field_or_the_variable_it_came_from(monkeypatch, run_config, env, named,
                                                                            not_named):
    from nova_jobs.resources.clickhouse import ClickHouseResource
    from nova_jobs.resources.redis import RedisResource
    from nova_jobs.trending.assets import build_trending_asset
    from nova_jobs.trending.windows import WINDOWS

    monkeypatch.delenv("TRENDING_TOPK", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Nothing is reached: the settings are resolved before any query.
    resources = {"clickhouse": ClickHouseResource(url="http://127.0.0.1:9"), "redis": RedisResource(url="redis://127.0.0.1:9/0")}
    result = dg.materialize([build_trending_asset(WINDOWS["1h"])], resources=resources, raise_on_error=False,
                            run_config={"ops": {"cache__trending_1h": {"config": run_config}}})
    assert not result.success
    text = _failure_text(result)
    assert named in text
    assert not_named not in text
