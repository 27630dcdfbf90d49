"""What `make dev` leaves in the terminal for a run: one line per event at most."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import yaml

from nova_jobs_dev.devlog import TerminalFilter
from nova_jobs_tests.conftest import insert_rows

pytestmark = pytest.mark.integration


def shown(text: str, verbose: bool) -> list[str]:
    keep = TerminalFilter(verbose)
    return [line for line in text.splitlines() if keep.shows(line)]


def test_one_run_prints_at_most_one_terminal_line_per_event(clickhouse, redis_url, tmp_path, project_root, capfd):
    from nova_jobs.definitions import defs

    now = datetime.now(UTC).replace(microsecond=0)
    insert_rows(clickhouse, "post_events", ["event_time", "post_id", "user_id", "event_type"],
                [(now - timedelta(minutes=5), 1, 10, "like"), (now - timedelta(minutes=5), 2, 10, "share")])
    # The local instance's logging, as `make dev` runs it (correlation handler beside Dagster's console logger).
    python_logs = yaml.safe_load((project_root / "dagster.yaml").read_text())["python_logs"]
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"python_logs": python_logs}) as instance:
        capfd.readouterr()
        result = defs.resolve_job_def("trending_1h").execute_in_process(instance=instance)
        assert result.success
        raw = capfd.readouterr().err
        events = [entry for entry in instance.all_logs(result.run_id)
                  if not (entry.dagster_event and entry.dagster_event.event_type_value.endswith("_PLANNED"))]

    raw_lines = [line for line in raw.splitlines() if result.run_id in line]
    # What the terminal got before: every event twice (the bug this guards against).
    assert len(raw_lines) >= 2 * len(events) - 2, (len(raw_lines), len(events))

    everything = shown(raw, verbose=True)
    assert len(events) > 5
    assert len(everything) <= len(events), "\n".join(everything)
    assert all(f"[correlation_id={result.run_id}]" in line for line in everything)
    assert any("PIPELINE_SUCCESS" in line or "RUN_SUCCESS" in line for line in everything), "\n".join(everything)

    # By default the terminal keeps what a person reads: the run's own INFO lines, no DEBUG chatter.
    default = shown(raw, verbose=False)
    assert 1 <= len(default) < len(everything)
    assert any("trending 1h:" in line for line in default)
    assert not any(" DEBUG " in line for line in default)


def test_warnings_and_routine_daemon_lines_stay_in_the_log_file():
    noise = [
        "/x/.venv/lib/python3.11/site-packages/click/core.py:911: SupersessionWarning: Function `dev_command` is"
        " superseded and its usage is discouraged. Use 'dg dev' instead.",
        "  return callback(*args, **kwargs)",
        "\x1b[32m2026-11-30 01:00:43 +0000\x1b[0m - dagster - \x1b[34mWARNING\x1b[0m - Found a dagster instance"
        " configuration value (dagster.yaml) in the current folder, but your DAGSTER_HOME ...",
        "2026-11-30 01:01:16 +0000 - dagster - WARNING - /x/dagster/_core/decorator_utils.py:232: BetaWarning:"
        " Parameter `backfill_policy` of function `asset` is currently in beta",
        "  @dg.asset(",
        "2026-11-30 01:02:00 +0000 - dagster.daemon.SensorDaemon - INFO - Checking for new runs for sensor: x",
        "2026-11-30 01:02:00 +0000 - dagster - DEBUG - trending_1h - 4157389e-640d-4def-8645-a4be96ee0fad - 8492"
        " - STEP_START - Started execution of step",
    ]
    kept = [
        "2026-11-30 01:02:01 +0000 - dagster.daemon.SensorDaemon - ERROR - Sensor dlq_replay_sensor failed",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
    ]
    assert shown("\n".join(noise + kept), verbose=False) == kept
