"""The exporter watches the dead-letter pipeline: dead runs not yet on jobs-dlq (real failed
runs on a temp instance), the DLQ sensors' ticks (a real dagster-daemon ticking the real sensors
while Kafka is down, then up) and the replay sensor's summary in its cursor."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from nova_jobs.deadletter.message import is_published
from nova_jobs.observability.dlq_watch import CorruptSummary, ReplaySummary, parse_summary
from nova_jobs.lib.tags import PUBLISHED_TAG as DLQ_PUBLISHED_TAG
from nova_jobs.observability.sensor_ticks import read_sensor
from nova_jobs.observability.server import Exporter
from nova_jobs_dev.localstack import default_signals, free_port, tansu_process
from nova_jobs_tests.conftest import stop_process_group
from nova_jobs_tests.test_observability import Served, value

pytestmark = pytest.mark.integration


@dg.op
def explode() -> None:
    raise RuntimeError("the warehouse is gone")


@dg.job
def doomed() -> None:
    explode()


def parse_samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sensor_value(samples: dict[tuple, float], metric: str, sensor_name: str) -> float | None:
    """The sample of one sensor, whatever its code location is called."""
    found = [v for (name, labels), v in samples.items() if name == metric and ("sensor_name", sensor_name) in labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def fail(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> dg.DagsterRun:
    result = doomed.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def record(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, tags: dict[str, str], job_name: str = "doomed") -> dg.DagsterRun:
    return instance.add_run(dg.DagsterRun(job_name=job_name, status=status, tags=tags))


def test_dead_runs_not_yet_published_are_counted_with_their_age(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        served = Served(Exporter(instance, refresh_seconds=0))  # each scrape sees the runs just tagged
        try:
            unpublished = fail(instance)
            published = fail(instance)
            instance.add_run_tags(published.run_id, {DLQ_PUBLISHED_TAG: published.run_id})
            # A UI re-execution copies the parent's tags, marker included: this run is not published.
            inherited = fail(instance, tags={DLQ_PUBLISHED_TAG: published.run_id})
            # Records as other writers leave them (executing more runs would only make the test slower).
            older_marker = record(instance, dg.DagsterRunStatus.FAILURE, {DLQ_PUBLISHED_TAG: "2026-11-29T17:00:00Z"})
            retried = record(instance, dg.DagsterRunStatus.FAILURE, {"dagster/will_retry": "true"})
            record(instance, dg.DagsterRunStatus.SUCCESS, {}, job_name="doomed_ok")

            before = time.time()
            samples = served.samples()
            after = time.time()
            assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed") == 2
            assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed_ok") == 0
            failed_at = instance.get_run_record_by_id(unpublished.run_id).end_time
            age = value(samples, "nova_dlq_unpublished_oldest_age_seconds", job_name="doomed")
            assert before - failed_at <= age <= after - failed_at
            assert value(samples, "job_dlq_messages_total", job_name="doomed") == 2  # its own marker, or a timestamp
            assert {older_marker.run_id, retried.run_id}.isdisjoint(served.exporter.ledger.unpublished.runs)

            # The failure sensor publishes the oldest: the backlog's age is now the inherited one's.
            instance.add_run_tags(unpublished.run_id, {DLQ_PUBLISHED_TAG: unpublished.run_id})
            samples = served.samples()
            assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed") == 1
            inherited_at = instance.get_run_record_by_id(inherited.run_id).end_time
            assert value(samples, "nova_dlq_unpublished_oldest_age_seconds", job_name="doomed") <= time.time() - inherited_at
            assert value(samples, "nova_dlq_unpublished_oldest_age_seconds", job_name="doomed") < time.time() - failed_at

            instance.add_run_tags(inherited.run_id, {DLQ_PUBLISHED_TAG: inherited.run_id})
            samples = served.samples()
            assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed") == 0
            assert value(samples, "nova_dlq_unpublished_oldest_age_seconds", job_name="doomed") == 0
            assert value(samples, "job_dlq_messages_total", job_name="doomed") == 4

            # A marker rewritten to name another run un-publishes it again; outside the failure
            # sensor's lookback it is no longer waited for.
            instance.add_run_tags(inherited.run_id, {DLQ_PUBLISHED_TAG: published.run_id})
            ledger = served.exporter.ledger
            ledger.refresh()
            assert ledger.dlq_backlog["doomed"].runs == 1
            assert ledger.unpublished.backlog(now=inherited_at + 3 * 3600 + 1, lookback_seconds=3 * 3600) == {}
        finally:
            served.close()


RUN_ID = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("marker", "published"),
    [
        (None, False),
        (RUN_ID, True),  # written by the failure sensor for this run
        (f"{RUN_ID}@2026-11-29T17:00:00Z", True),
        ("2026-11-29T17:00:00Z", True),  # an older sensor's timestamp
        ("true", True),
        (str(uuid.uuid4()), False),  # inherited from the run this one re-executes
        (f"{uuid.uuid4()}@2026-11-29T17:00:00Z", False),
        (str(uuid.uuid4()).upper(), False),
    ],
)
def test_is_published_belongs_to_the_run(marker, published):
    tags = {DLQ_PUBLISHED_TAG: marker} if marker is not None else {}
    run = dg.DagsterRun(job_name="doomed", run_id=RUN_ID, status=dg.DagsterRunStatus.FAILURE, tags=tags)
    assert is_published(run) is published


def test_replay_summary_is_read_tolerantly(caplog):
    good = json.dumps({"offsets": {}, "summary": {"trending_1h": {"waiting": 2, "parked": 1, "skipped": 7}, "unknown": {"skipped": 3}}})
    assert parse_summary(good) == {
        "trending_1h": {"waiting": 2, "parked": 1, "skipped": 7},
        "unknown": {"waiting": 0, "parked": 0, "skipped": 3},
    }
    assert parse_summary(None) == {} and parse_summary(json.dumps({"offsets": {}})) == {}  # an older sensor
    for bad in ("{", "[1]", '{"summary": [1]}', '{"summary": {"x": 3}}', '{"summary": {"x": {"parked": -1}}}',
                '{"summary": {"x": {"parked": true}}}', '{"summary": {"x": {"parked": 1e400}}}', "[" * 100_000):
        with pytest.raises(CorruptSummary):
            parse_summary(bad)

    reader = ReplaySummary()
    with caplog.at_level(logging.WARNING, logger="nova_jobs.observability.dlq_watch"):
        for cursor in ("{", "{", '{"summary": 5}', "{"):
            assert reader.read(cursor) == {}
        assert len(caplog.records) == 1, "a corrupt cursor is logged once, not on every scrape"
        assert reader.read(good)["trending_1h"]["parked"] == 1
        reader.read("{")
        assert len(caplog.records) == 2  # corrupt again after a good one


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["summary", "waiting", "parked", "skipped", "x"]), inner, max_size=4),
    max_leaves=20,
).map(json.dumps)))
def test_any_cursor_gives_counts_or_corrupt(cursor):
    try:
        summary = parse_summary(cursor)
    except CorruptSummary:
        return
    for counts in summary.values():
        assert set(counts) == {"waiting", "parked", "skipped"}
        assert all(type(n) is int and n >= 0 for n in counts.values())


CODE_LOCATION = '''
import dagster as dg
from nova_jobs.deadletter import dead_letter_defs
from nova_jobs.resources.kafka import KafkaResource

@dg.op
def explode():
    raise RuntimeError("the warehouse is gone")

@dg.job
def doomed():
    explode()

defs = dg.Definitions.merge(
    dg.Definitions(jobs=[doomed], resources={"kafka": KafkaResource(brokers=dg.EnvVar("KAFKA_BROKERS"))}),
    dead_letter_defs([doomed]),
)
'''

DLQ_SENSORS = ("dlq_failure_sensor", "dlq_replay_sensor")


def ticks(instance: dg.DagsterInstance) -> dict[str, list]:
    """The ticks the UI shows, newest first."""
    return {
        state.instigator_name: instance.get_ticks(state.instigator_origin_id, state.selector_id)
        for state in instance.all_instigator_state()
        if state.instigator_name in DLQ_SENSORS
    }


def wait_for(what, check, timeout: float, daemon: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert daemon.poll() is None, f"dagster-daemon exited: {log.read_text()[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-3000:]}")


@pytest.mark.slow
def test_dlq_sensor_ticks_and_replay_backlog_from_a_real_daemon(tmp_path, project_root):
    """Kafka down: both DLQ sensors fail tick after tick and the dead run waits unpublished.
    Kafka back: the ticks succeed, the run is published, and the replay sensor parks it (its
    cursor's summary). Then a summary set the public way (`dagster sensor cursor --set`) is read
    as it stands, jobs the code location does not have included."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    code = tmp_path / "dlq_location.py"
    code.write_text(CODE_LOCATION)
    port = free_port()  # nothing listens here until the broker starts
    env = {**os.environ, "DAGSTER_HOME": str(home), "KAFKA_BROKERS": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(project_root), str(tmp_path)])}
    bin_dir = Path(sys.executable).parent
    instance = dg.DagsterInstance.from_config(str(home))
    # The storages exist before two processes race to create them.
    instance.all_instigator_state()
    dead = fail(instance)
    exporter = Exporter(instance, refresh_seconds=0)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-f", str(code)],
        env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        preexec_fn=default_signals, start_new_session=True,
    )
    try:
        def failing_twice():
            found = ticks(instance)
            return len(found) == 2 and all(
                sum(t.status.value == "FAILURE" for t in found[name]) >= 2 for name in DLQ_SENSORS
            ) and found

        seen = wait_for("two failed ticks of each DLQ sensor", failing_twice, 150, daemon, log)
        samples = parse_samples(exporter.metrics().decode())
        for name in DLQ_SENSORS:
            # A tick still in progress (STARTED) has no outcome yet; every finished one failed.
            assert all(t.status.value == "FAILURE" for t in seen[name] if t.status.value != "STARTED"), \
                [t.status for t in seen[name]]
            assert sensor_value(samples, "nova_sensor_consecutive_failed_ticks", name) >= 2
            assert sensor_value(samples, "nova_sensor_running", name) == 1
            assert sensor_value(samples, "nova_sensor_last_success_timestamp", name) is None
        assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed") == 1
        # More failures than one page of ticks: the count then comes from the daemon's own.
        states = {s.instigator_name: s for s in instance.all_instigator_state() if s.instigator_name in DLQ_SENSORS}
        for name in DLQ_SENSORS:
            paged = read_sensor(instance, states[name], page=1)
            assert paged.consecutive_failures >= 2 and paged.last_success is None

        with tansu_process(port=port, log_path=tmp_path / "tansu.log"):
            def both_ticked_fine():
                found = ticks(instance)
                good = {name: [t for t in found[name] if t.status.value in ("SUCCESS", "SKIPPED")] for name in DLQ_SENSORS}
                return all(good.values()) and good

            good = wait_for("a successful tick of each DLQ sensor", both_ticked_fine, 150, daemon, log)
            samples = parse_samples(exporter.metrics().decode())
            for name in DLQ_SENSORS:
                assert sensor_value(samples, "nova_sensor_consecutive_failed_ticks", name) == 0
                last = sensor_value(samples, "nova_sensor_last_success_timestamp", name)
                assert last >= good[name][-1].timestamp - 1e-3  # this tick or a later one
                assert last <= time.time()
            for name in DLQ_SENSORS:
                paged = read_sensor(instance, states[name], page=1)
                assert paged.consecutive_failures == 0 and paged.last_success >= good[name][-1].timestamp - 1e-3
            assert value(samples, "nova_dlq_unpublished_runs", job_name="doomed") == 0
            assert value(samples, "job_dlq_messages_total", job_name="doomed") == 1
            assert is_published(instance.get_run_by_id(dead.run_id))

            # The replay sensor reads the published failure (a RuntimeError: permanent) and
            # parks it; its own cursor summary reaches the exporter.
            def parked_by_the_sensor():
                found = parse_samples(exporter.metrics().decode())
                return value(found, "nova_dlq_parked_messages", job_name="doomed") == 1 and found

            samples = wait_for("the replay sensor to park the failure", parked_by_the_sensor, 150, daemon, log)
            assert value(samples, "nova_dlq_waiting_messages", job_name="doomed") == 0
        stop_process_group(daemon)

        summary = {"doomed": {"waiting": 2, "parked": 1, "skipped": 4}, "unknown": {"waiting": 0, "parked": 0, "skipped": 3}}
        subprocess.run(
            [str(bin_dir / "dagster"), "sensor", "cursor", "dlq_replay_sensor", "-f", str(code),
             "--set", json.dumps({"offsets": {}, "summary": summary})],
            env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120,
        )
        samples = parse_samples(exporter.metrics().decode())
        assert value(samples, "nova_dlq_waiting_messages", job_name="doomed") == 2
        assert value(samples, "nova_dlq_parked_messages", job_name="doomed") == 1
        assert value(samples, "nova_dlq_skipped_messages_total", job_name="doomed") == 4
        assert value(samples, "nova_dlq_skipped_messages_total", job_name="unknown") == 3
        assert value(samples, "nova_dlq_parked_messages", job_name="unknown") == 0
    finally:
        stop_process_group(daemon)
