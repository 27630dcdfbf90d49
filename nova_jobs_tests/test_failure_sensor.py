"""The DLQ failure sensor under the faults production brings, against real Dagster instances and
the real tansu broker: a backlog of a thousand failures during a Kafka outage, re-executed runs
that inherit the published marker, a retry that never comes, a run storage that rejects the
published tag after the broker acknowledged, and run-monitoring failures."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from nova_jobs.deadletter.failure_sensor import dlq_failure_sensor
from nova_jobs.deadletter.message import build_message
from nova_jobs.lib.tags import PUBLISHED_TAG
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_dev.localstack import free_port
from nova_jobs_tests.conftest import dlq_messages

pytestmark = pytest.mark.integration


@dg.op
def reach_warehouse():
    raise ConnectionRefusedError("[Errno 111] Connection refused")


@dg.job
def dlq_probe():
    reach_warehouse()


def probe_instance(tmp_path: Path, **overrides):
    # One event-log database for all runs (as Postgres has) instead of one sqlite file per run.
    return dg.instance_for_test(temp_dir=str(tmp_path), overrides={
        "event_log_storage": {"module": "dagster._core.storage.event_log", "class": "ConsolidatedSqliteEventLogStorage",
                              "config": {"base_dir": str(tmp_path / "events")}},
        **overrides,
    })


def fail_for_real(instance, **tags) -> str:
    result = dlq_probe.execute_in_process(instance=instance, raise_on_error=False, tags=tags or None)
    assert not result.success
    return result.run_id


def fail_from_outside(instance, message: str = "Run worker lost") -> str:
    """A failed run as Dagster records one failed from outside its worker (how run monitoring
    fails it): a run of the job, then RUN_FAILURE. Far cheaper than executing it."""
    run = instance.create_run_for_job(dlq_probe)
    instance.report_run_failed(run, message)
    return run.run_id


def tick(instance, kafka: KafkaResource, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": kafka})
    return dlq_failure_sensor(context)


def published(kafka: KafkaResource, run_ids) -> Counter:
    """How many messages each of `run_ids` has on the topic."""
    return Counter(message["run_id"] for message in dlq_messages(kafka, set(run_ids)))


def closed_broker() -> KafkaResource:
    return KafkaResource(brokers=f"127.0.0.1:{free_port()}", request_timeout_ms=1000)


def drain(instance, kafka, cursor, limit=50) -> tuple[str, int]:
    """Tick until a tick has nothing to publish; (cursor, ticks that published)."""
    for ticks in range(limit):
        result = tick(instance, kafka, cursor)
        cursor = result.cursor
        if result.skip_reason is not None:
            return cursor, ticks
    raise AssertionError(f"still publishing after {limit} ticks")


@pytest.mark.slow  # a thousand runs written, then each tagged: a minute or more on busy cores
def test_a_backlog_of_a_thousand_failures_drains_each_exactly_once(kafka_resource, monkeypatch, record_property):
    monkeypatch.setenv("NOVA_DLQ_PAGE_SIZE", "200")
    # The in-memory sqlite storages of an ephemeral instance: the same SQL run storage as on
    # disk, three times faster to fill with a thousand runs.
    with dg.DagsterInstance.ephemeral() as instance:
        run_ids = [fail_for_real(instance) for _ in range(3)]
        run_ids += [fail_from_outside(instance) for _ in range(1000)]

        # Kafka is down: every tick fails, nothing is published, nothing is marked.
        cursor = None
        for _ in range(2):
            with pytest.raises(Exception, match="not published"):
                tick(instance, closed_broker(), cursor)
        assert not any(PUBLISHED_TAG in r.dagster_run.tags for r in instance.get_run_records())

        started = time.monotonic()
        cursor, ticks = drain(instance, kafka_resource, cursor)
        seconds = time.monotonic() - started
        record_property("drain", f"{len(run_ids)} runs in {ticks} ticks, {seconds:.1f} s")
        print(f"DLQ backlog: {len(run_ids)} runs drained in {ticks} publishing ticks, {seconds:.1f} s")

        counts = published(kafka_resource, run_ids)
        assert counts == Counter({run_id: 1 for run_id in run_ids})
        # Bounded work per tick: a page at most.
        assert ticks >= len(run_ids) // 200

        later = fail_for_real(instance)
        cursor = tick(instance, kafka_resource, cursor).cursor
        tick(instance, kafka_resource, cursor)
        assert published(kafka_resource, [later]) == Counter({later: 1})


def test_marking_a_full_page_published_does_not_wedge_the_sensor(kafka_resource, tmp_path, monkeypatch):
    """The backlog at a small page: every tick marks a whole page, and the next tick moves on."""
    monkeypatch.setenv("NOVA_DLQ_PAGE_SIZE", "4")
    with probe_instance(tmp_path) as instance:
        run_ids = [fail_from_outside(instance) for _ in range(13)]
        with pytest.raises(Exception, match="not published"):
            tick(instance, closed_broker(), None)
        cursor, ticks = drain(instance, kafka_resource, None)
        assert ticks == 4  # 13 runs, 4 a tick
        assert published(kafka_resource, run_ids) == Counter({run_id: 1 for run_id in run_ids})

        later = fail_from_outside(instance)
        cursor = tick(instance, kafka_resource, cursor).cursor
        tick(instance, kafka_resource, cursor)
        assert published(kafka_resource, [later]) == Counter({later: 1})


def test_a_re_executed_run_is_published_though_it_inherits_the_marker(kafka_resource, tmp_path):
    with probe_instance(tmp_path) as instance:
        parent = fail_for_real(instance)
        cursor = tick(instance, kafka_resource, None).cursor
        assert published(kafka_resource, [parent]) == Counter({parent: 1})

        # Re-executed from the UI: Dagster copies the parent's tags, the marker among them.
        inherited = dict(instance.get_run_by_id(parent).tags)
        assert PUBLISHED_TAG in inherited
        child = fail_for_real(instance, **inherited, **{"dagster/parent_run_id": parent, "dagster/root_run_id": parent})
        assert instance.get_run_by_id(child).tags[PUBLISHED_TAG] == inherited[PUBLISHED_TAG]
        drain(instance, kafka_resource, cursor)
        assert published(kafka_resource, [parent, child]) == Counter({parent: 1, child: 1})
        assert instance.get_run_by_id(child).tags[PUBLISHED_TAG] == child


def test_markers_written_before_they_named_their_run(kafka_resource, tmp_path):
    """Upgrading: a run the old sensor published (marker = publish time) is not sent again; its
    re-execution, carrying the same copied marker, is."""
    with probe_instance(tmp_path) as instance:
        old = fail_for_real(instance)
        instance.add_run_tags(old, {PUBLISHED_TAG: "2026-11-29T17:00:00Z"})
        child = fail_for_real(instance, **{PUBLISHED_TAG: "2026-11-29T17:00:00Z", "dagster/parent_run_id": old})
        drain(instance, kafka_resource, "1764435600.0")  # the old sensor's cursor
        assert published(kafka_resource, [old, child]) == Counter({child: 1})


def test_a_run_whose_retry_never_comes_is_dead_after_the_wait(kafka_resource, tmp_path, monkeypatch):
    with probe_instance(tmp_path, run_retries={"enabled": True, "max_retries": 1}) as instance:
        run_id = fail_for_real(instance)
        assert instance.get_run_by_id(run_id).tags.get("dagster/will_retry") == "true"

        # The retry daemon is down: no re-execution appears.
        monkeypatch.setenv("NOVA_DLQ_RETRY_WAIT_SECONDS", "3600")
        first = tick(instance, kafka_resource, None)
        assert "awaiting Dagster's retry" in first.skip_reason.skip_message
        assert published(kafka_resource, [run_id]) == Counter()

        monkeypatch.setenv("NOVA_DLQ_RETRY_WAIT_SECONDS", "0")
        tick(instance, kafka_resource, first.cursor)
        assert published(kafka_resource, [run_id]) == Counter({run_id: 1})


def test_a_run_whose_retry_came_is_not_dead(kafka_resource, tmp_path, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_RETRY_WAIT_SECONDS", "0")
    with probe_instance(tmp_path, run_retries={"enabled": True, "max_retries": 1}) as instance:
        first = fail_for_real(instance)
        retry = fail_for_real(instance, **{"dagster/parent_run_id": first, "dagster/root_run_id": first,
                                           "dagster/retry_number": "1", "dagster/max_retries": "0"})
        drain(instance, kafka_resource, None)
        assert published(kafka_resource, [first, retry]) == Counter({retry: 1})


def test_a_rejected_tag_write_repeats_at_most_the_run_in_hand(kafka_resource, tmp_path):
    with probe_instance(tmp_path) as instance:
        run_ids = [fail_from_outside(instance) for _ in range(10)]
        runs_db = next(tmp_path.rglob("runs.db"))
        # Another writer holds the run database's write lock: the published tag cannot be written.
        blocker = sqlite3.connect(runs_db, timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(Exception, match="locked"):
                tick(instance, kafka_resource, None)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert not any(PUBLISHED_TAG in instance.get_run_by_id(r).tags for r in run_ids)

        drain(instance, kafka_resource, None)
        counts = published(kafka_resource, run_ids)
        assert set(counts) == set(run_ids)
        # Only the run whose tag write failed went out twice (consumers drop it by run_id).
        assert sum(counts.values()) <= len(run_ids) + 1


@pytest.mark.parametrize(("message", "error_class"), [
    # The texts Dagster 1.13's run monitoring fails a run with (dagster/_daemon/monitoring).
    ("Detected run worker status WorkerStatus.FAILED: 'Run worker failed: OOMKilled'. Marking run x as failed.",
     "RunFailure.WORKER_DIED"),
    ("Exceeded maximum runtime of 300 seconds.", "RunFailure.MAX_RUNTIME"),
    ("This job is being forcibly marked as failed. The computational resources created by the run may not "
     "have been fully cleaned up.", "RunFailure.MAX_RUNTIME"),
])
def test_run_monitoring_failures_are_transient(tmp_path, message, error_class):
    with probe_instance(tmp_path) as instance:
        run_id = fail_from_outside(instance, message)
        built = build_message(instance, instance.get_run_by_id(run_id))
        assert (built.kind, built.error_class) == ("transient", error_class)
        assert built.error.startswith(message[:20])


def test_an_unknown_outside_failure_stays_permanent(tmp_path):
    with probe_instance(tmp_path) as instance:
        run_id = fail_from_outside(instance, "Marked failed by an operator: bad config")
        assert build_message(instance, instance.get_run_by_id(run_id)).kind == "permanent"


# A worker killed for real, failed by the daemon's run monitoring and dead-lettered as
# transient: test_observability.py::test_killed_run_worker_is_counted_as_failed_and_dead_lettered_as_transient
