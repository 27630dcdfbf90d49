"""The replay sensor after outages and broker accidents: stored offsets past the end, failures a
later success has superseded, a storm of failures of the same jobs (one replay in flight per job
and partition, a per-tick budget), a full waiting list that leaves the rest on the topic, and
the per-job summary the exporter reads. Real tansu broker, real Dagster instance."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pytest

from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC
from nova_jobs.deadletter.replay_sensor import ReplayState
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_dev.localstack import ManagedProcess, tansu_process
from nova_jobs_tests.dlq_helpers import (
    daily_job,
    decisions,
    encode,
    ends,
    grown,
    make_defs,
    message,
    plain_job,
    run_replay,
    send,
    tick,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    with tansu_process(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker


@pytest.fixture
def kafka(own_broker: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> KafkaResource:
    brokers = f"127.0.0.1:{own_broker.port}"
    monkeypatch.setenv("KAFKA_BROKERS", brokers)
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    return KafkaResource(brokers=brokers)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def replayed(result) -> list[str]:
    return [r.tags["nova/replay_of"] for r in result.run_requests]


def states_of(kafka, since, run_ids) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for d in decisions(kafka, since):
        if d["run_id"] in found:
            found[d["run_id"]].append(d["state"])
    return found


def test_offsets_past_the_end_are_reset_with_a_warning_and_read_again(kafka, instance, capfd):
    defs = make_defs(kafka)
    good = message()
    send(kafka, DLQ_TOPIC, [encode(good)])
    # A cursor kept while the broker lost its data (make dev's in-memory broker, a recreated topic).
    far = {topic: {p: end + 1_000_000 for p, end in parts.items()} for topic, parts in ends(kafka).items()}
    far[DLQ_TOPIC]["99"] = 7
    first = tick(defs, instance, kafka, ReplayState(offsets=far).dump())
    log = capfd.readouterr().err
    assert "is past the end" in log and "reading it again from the start" in log
    assert "jobs-dlq[99]: partition gone" in log
    assert good["run_id"] in replayed(first)
    assert "99" not in ReplayState.load(first.cursor).offsets[DLQ_TOPIC]
    [request] = [r for r in first.run_requests if r.tags["nova/replay_of"] == good["run_id"]]
    assert run_replay(defs, instance, request).success

    later = message("other")
    send(kafka, DLQ_TOPIC, [encode(later)])
    assert replayed(tick(defs, instance, kafka, first.cursor)) == [later["run_id"]]

    # Reset again: what was already replayed is recognised from run tags, not replayed twice.
    again = tick(defs, instance, kafka, ReplayState(offsets=far).dump())
    assert good["run_id"] not in replayed(again)


def test_a_failure_superseded_by_a_later_success_is_not_replayed(kafka, instance):
    defs = make_defs(kafka)
    start = ends(kafka)
    plain = message(age=timedelta(minutes=10))
    day1 = message("daily", partition_key="2026-11-01")
    day2 = message("daily", partition_key="2026-11-02")
    send(kafka, DLQ_TOPIC, [encode(plain), encode(day1), encode(day2)])
    # The next scheduled runs succeed before the replay sensor looks.
    assert plain_job.execute_in_process(instance=instance).success
    assert daily_job.execute_in_process(instance=instance, partition_key="2026-11-02").success

    result = tick(defs, instance, kafka, ReplayState(offsets=start).dump())
    assert replayed(result) == [day1["run_id"]]
    assert states_of(kafka, start, [plain["run_id"], day1["run_id"], day2["run_id"]]) == {
        plain["run_id"]: ["superseded"], day1["run_id"]: ["replayed"], day2["run_id"]: ["superseded"],
    }


def test_a_storm_replays_one_per_job_and_partition_within_the_budget_and_the_rest_are_superseded(
    kafka, instance, monkeypatch
):
    monkeypatch.setenv("NOVA_DLQ_MAX_REPLAYS_PER_TICK", "2")
    defs = make_defs(kafka)
    start = ends(kafka)
    # An outage: a failure a minute of two jobs, and three partitions of a third.
    plain = [message("plain", age=timedelta(minutes=60 - i)) for i in range(30)]
    other = [message("other", age=timedelta(minutes=60 - i)) for i in range(30)]
    daily = [message("daily", partition_key=f"2026-11-0{day}") for day in (1, 2, 3)]
    send(kafka, DLQ_TOPIC, [encode(m) for m in plain + other + daily])

    first = tick(defs, instance, kafka, ReplayState(offsets=start).dump())
    assert replayed(first) == [plain[0]["run_id"], other[0]["run_id"]]
    summary = json.loads(first.cursor)["summary"]
    assert {job: row["waiting"] for job, row in summary.items()} == {"plain": 29, "other": 29, "daily": 3}

    # Still in flight: plain and other wait; the budget goes to the daily partitions.
    second = tick(defs, instance, kafka, first.cursor)
    assert sorted(r.partition_key for r in second.run_requests) == ["2026-11-01", "2026-11-02"]

    assert run_replay(defs, instance, first.run_requests[0]).success  # plain's replay succeeds
    third = tick(defs, instance, kafka, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2026-11-03"]
    outcome = states_of(kafka, start, [m["run_id"] for m in plain])
    assert outcome[plain[0]["run_id"]] == ["replayed", "succeeded"]
    assert all(outcome[m["run_id"]] == ["waiting", "superseded"] for m in plain[1:])
    summary = json.loads(third.cursor)["summary"]
    assert {job: row["waiting"] for job, row in summary.items()} == {"plain": 0, "other": 29, "daily": 0}


def test_what_does_not_fit_the_waiting_list_stays_on_the_topic(kafka, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "3600")
    monkeypatch.setenv("NOVA_DLQ_MAX_WAITING", "3")
    defs = make_defs(kafka)
    start = ends(kafka)
    cooling = [message(age=timedelta(0)) for _ in range(5)]
    send(kafka, DLQ_TOPIC, [encode(m) for m in cooling])
    partition, first_offset = grown(start, ends(kafka), DLQ_TOPIC)

    first = tick(defs, instance, kafka, ReplayState(offsets=start).dump())
    state = ReplayState.load(first.cursor)
    assert [w["message"]["run_id"] for w in state.waiting] == [m["run_id"] for m in cooling[:3]]
    assert state.offsets[DLQ_TOPIC][str(partition)] == first_offset + 3
    assert state.counts["deferred"] == 1

    monkeypatch.setenv("NOVA_DLQ_MAX_WAITING", "10")
    state = ReplayState.load(tick(defs, instance, kafka, first.cursor).cursor)
    assert [w["message"]["run_id"] for w in state.waiting] == [m["run_id"] for m in cooling]
    assert state.offsets[DLQ_TOPIC][str(partition)] == first_offset + 5


def test_the_cursor_summary_counts_waiting_parked_and_skipped_per_job(kafka, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "3600")
    defs = make_defs(kafka)
    start = ends(kafka)
    parked = [message("other", kind="permanent") for _ in range(2)]
    send(kafka, DLQ_TOPIC, [
        encode(message(age=timedelta(0))),  # plain: waiting
        encode(message(partition_key="2026-11-01")),  # plain: skipped (not partitioned)
        *[encode(m) for m in parked],
        b"garbage", encode(message("no_such_job")),  # unknown: skipped
    ])
    first = tick(defs, instance, kafka, ReplayState(offsets=start).dump())
    assert json.loads(first.cursor)["summary"] == {
        "plain": {"waiting": 1, "parked": 0, "skipped": 1},
        "other": {"waiting": 0, "parked": 2, "skipped": 0},
        "daily": {"waiting": 0, "parked": 0, "skipped": 0},
        "unknown": {"waiting": 0, "parked": 0, "skipped": 2},
    }

    # An operator replays one parked message: it leaves the parked count.
    request = {"schema_version": 1, "type": "replay_request", "request_id": uuid.uuid4().hex,
               "requested_at": "2026-11-30T00:00:00Z", "requested_by": "ops", "message": parked[0]}
    send(kafka, CONTROL_TOPIC, [encode(request)])
    second = tick(defs, instance, kafka, first.cursor)
    assert replayed(second) == [parked[0]["run_id"]]
    assert json.loads(second.cursor)["summary"]["other"] == {"waiting": 0, "parked": 1, "skipped": 0}
