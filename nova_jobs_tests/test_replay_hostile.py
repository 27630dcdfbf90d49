"""No record stops the replay sensor: each poison record on `jobs-dlq` or `jobs-dlq-replay` is
skipped with its reason and the cursor moves past it, while good records around it are replayed;
`nova-jobs dlq list` shows the same records as skipped. Real tansu broker, real Dagster instance."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nova_jobs.cli import main as cli_main
from nova_jobs.deadletter.message import CONTROL_TOPIC, DLQ_TOPIC
from nova_jobs.deadletter.replay_sensor import ReplayState
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs_dev.localstack import ManagedProcess, tansu_process
from nova_jobs_tests.dlq_helpers import decisions, encode, ends, grown, make_defs, message, send, tick

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


def raw(data: dict, field: str, token: str) -> bytes:
    """`data` as JSON with `field`'s value replaced by a literal JSON token."""
    return json.dumps({**data, field: "@@"}).replace('"@@"', token).encode()


POISON = {
    "timestamp without a zone": lambda: encode(message(timestamp="2026-11-29T17:00:00")),
    "retry_count a word": lambda: encode(message(retry_count="three")),
    "retry_count 1e400": lambda: raw(message(), "retry_count", "1e400"),
    "retry_count of 5000 digits": lambda: raw(message(), "retry_count", "9" * 5000),
    "deeply nested context": lambda: raw(message(), "context", "[" * 20000 + "]" * 20000),
    "retry_count a list": lambda: encode(message(retry_count=[1])),
    "partition key on an unpartitioned job": lambda: encode(message(partition_key="2026-11-01")),
    "no such partition": lambda: encode(message("daily", partition_key="yesterday")),
    "partitioned job without a partition": lambda: encode(message("daily")),
    "lone surrogate in the job name": lambda: raw(message(), "job_name", '"\\ud800"'),
}


def list_rows(capsys) -> list[dict]:
    capsys.readouterr()
    assert cli_main(["dlq", "list", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_each_poison_record_is_skipped_and_the_good_one_after_it_replayed(kafka, instance, capsys):
    defs = make_defs(kafka)
    start = ends(kafka)
    cases = sorted(POISON)
    # Each poison record followed by a good message of its own job (one replay per job in flight).
    goods = [message(["plain", "other", "daily"][i % 3], partition_key=f"2026-11-{i + 1:02d}" if i % 3 == 2 else None)
             for i in range(len(cases))]
    send(kafka, DLQ_TOPIC, [value for case, good in zip(cases, goods) for value in (POISON[case](), encode(good))])
    after = ends(kafka)
    partition, first = grown(start, after, DLQ_TOPIC)

    result = tick(defs, instance, kafka, ReplayState(offsets=start).dump())

    assert ReplayState.load(result.cursor).offsets[DLQ_TOPIC] == after[DLQ_TOPIC]
    new = decisions(kafka, start)
    skipped = {d["source"]["offset"] - first: d for d in new if d["state"] == "skipped"}
    assert sorted(skipped) == [2 * i for i in range(len(cases))], "exactly the poison records are skipped"
    for i, case in enumerate(cases):
        assert skipped[2 * i]["source"]["partition"] == partition
        assert skipped[2 * i]["reason"] == ("bad_partition" if "partition" in case else "malformed"), case
        assert skipped[2 * i]["detail"], case
    decided = {d["run_id"]: d["state"] for d in new if d["state"] != "skipped"}
    assert all(decided.get(good["run_id"]) in {"replayed", "waiting"} for good in goods)
    # One replay per job and partition: the three daily partitions, one of other, one of plain.
    assert sorted(r.job_name for r in result.run_requests) == ["daily", "daily", "daily", "other", "plain"]

    listed = {row["source"]: row["state"] for row in list_rows(capsys)}
    assert all(listed[f"{DLQ_TOPIC}[{partition}]@{first + 2 * i}"] == "skipped" for i in range(len(cases)))


def test_a_poison_replay_request_is_skipped_and_a_good_one_carried_out(kafka, instance, capsys):
    defs = make_defs(kafka)
    start = ends(kafka)
    parked = message(kind="permanent")
    good_request = {"schema_version": 1, "type": "replay_request", "request_id": uuid.uuid4().hex,
                    "requested_at": "2026-11-30T00:00:00Z", "requested_by": "ops", "message": parked}
    send(kafka, CONTROL_TOPIC, [
        b"\xff\xfe not json",
        encode({**good_request, "message": {**parked, "retry_count": "three"}}),
        encode({**good_request, "request_id": ["x"]}),
        encode({**good_request, "message": 7}),
        encode(good_request),
    ])
    partition, first = grown(start, ends(kafka), CONTROL_TOPIC)
    result = tick(defs, instance, kafka, ReplayState(offsets=start).dump())
    [request] = result.run_requests
    assert request.tags["nova/replay_request"] == good_request["request_id"]
    skipped = [d for d in decisions(kafka, start) if d["state"] == "skipped"]
    assert [(d["source"]["partition"], d["source"]["offset"] - first) for d in skipped] == [(partition, i) for i in range(4)]
    assert all(d["reason"] == "malformed" for d in skipped)
    assert ReplayState.load(result.cursor).offsets[CONTROL_TOPIC][str(partition)] >= first + 5
    list_rows(capsys)  # lists without crashing


def test_a_corrupt_cursor_starts_over_instead_of_failing_every_tick(kafka, instance, monkeypatch):
    monkeypatch.setenv("NOVA_DLQ_MAX_REPLAYS_PER_TICK", "1000")
    defs = make_defs(kafka)
    good = message("daily", partition_key="2026-10-15")  # no other test's replay of it is in flight
    send(kafka, DLQ_TOPIC, [encode(good)])
    for cursor in ("{not json", '{"offsets": {"jobs-dlq": {"0": "x"}}}', '{"waiting": 5}', "[]"):
        result = tick(defs, instance, kafka, cursor)
        # Read again from the start of the topics: the good message is found again.
        assert good["run_id"] in {r.tags["nova/replay_of"] for r in result.run_requests}
        assert ReplayState.load(result.cursor).problem is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Values each field of the contract must refuse: (field, JSON token).
HOSTILE = [
    ("schema_version", "2"), ("schema_version", '"1"'), ("schema_version", "true"), ("schema_version", "null"),
    ("job_name", '""'), ("job_name", "5"), ("job_name", '"no_such_job"'), ("job_name", '"plain\\n"'),
    ("job_name", json.dumps("x" * 5000)), ("kind", '"sometimes"'), ("kind", "null"),
    ("timestamp", '"2026-11-29T17:00:00"'), ("timestamp", '"yesterday"'), ("timestamp", "12"),
    ("timestamp", '"9999-12-31T23:59:59+00:00"'), ("timestamp", '"2999-01-01T00:00:00Z"'),
    ("retry_count", '"three"'), ("retry_count", "[1]"), ("retry_count", "1e400"), ("retry_count", "9" * 5000),
    ("retry_count", "-1"), ("retry_count", "3.5"), ("retry_count", "true"), ("retry_count", "NaN"),
    ("correlation_id", '""'), ("correlation_id", "{}"), ("run_id", "null"), ("run_id", '"a b"'),
    ("partition_key", '"2026-13-45"'), ("partition_key", "7"), ("context", '"text"'),
    ("context", "[" * 3000 + "]" * 3000), ("context", '{"a":' * 40 + "1" + "}" * 40),
    ("replay_attempt", '"1"'), ("error", "[]"), ("error", json.dumps("e" * 70_000)),
]


@st.composite
def dlq_record(draw) -> tuple[bool, bytes, str | None]:
    """(good, value, run id of a good message)."""
    shape = draw(st.sampled_from(["good", "good", "bytes", "json", "hostile"]))
    if shape == "bytes":
        return False, draw(st.binary(max_size=200)), None
    if shape == "json":
        return False, json.dumps(draw(JSON)).encode(), None
    data = message(job_name=draw(st.sampled_from(["plain", "other", "daily"])),
                   kind=draw(st.sampled_from(["transient", "permanent"])))
    if data["job_name"] == "daily":
        data["partition_key"] = "2026-11-01"
    if shape == "good":
        return True, encode(data), data["run_id"]
    field, token = draw(st.sampled_from(HOSTILE))
    return False, raw(data, field, token), None


@st.composite
def control_record(draw) -> tuple[bool, bytes, str | None]:
    good, value, run_id = draw(dlq_record())
    if not good and draw(st.booleans()):
        return False, value, None  # bytes or JSON that is no request
    inner = json.loads(value) if good else None
    request = {"schema_version": 1, "type": "replay_request", "request_id": uuid.uuid4().hex,
               "requested_at": "2026-11-30T00:00:00Z", "requested_by": "ops"}
    if good:
        return True, encode({**request, "message": inner}), run_id
    try:
        return False, json.dumps({**request, "message": json.loads(value)}).encode(), None
    except (ValueError, RecursionError):
        return False, encode({**request, "message": value.decode("latin-1")}), None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dlq=st.lists(dlq_record(), min_size=1, max_size=12), control=st.lists(control_record(), max_size=6))
def test_fuzz_the_sensor_and_the_list_never_fail_and_decide_every_record(dlq, control, kafka, instance, capsys):
    defs = make_defs(kafka)
    start = ends(kafka)
    send(kafka, DLQ_TOPIC, [value for _, value, _ in dlq])
    if control:
        send(kafka, CONTROL_TOPIC, [value for _, value, _ in control])
    after = ends(kafka)

    result = tick(defs, instance, kafka, ReplayState(offsets=start).dump())

    offsets = ReplayState.load(result.cursor).offsets
    for topic in (DLQ_TOPIC, CONTROL_TOPIC):
        assert all(offsets[topic][p] >= end for p, end in after[topic].items()), f"{topic} not read to its end"
    new = decisions(kafka, start)
    decided = {d["run_id"] for d in new if d["state"] != "skipped"}
    skipped_at = {(d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
                  for d in new if d["state"] == "skipped"}
    for topic, records in ((DLQ_TOPIC, dlq), (CONTROL_TOPIC, control)):
        if not records:
            continue
        partition, first = grown(start, after, topic)
        for position, (good, _, run_id) in enumerate(records):
            where = (topic, partition, first + position)
            if good:
                assert run_id in decided, f"no decision for good {topic} record {position}"
                assert where not in skipped_at
            else:
                assert where in skipped_at, f"bad {topic} record {position} not skipped"
    assert all(d["reason"] for d in new if d["state"] == "skipped")

    listed = {row["source"]: row["state"] for row in list_rows(capsys)}
    partition, first = grown(start, after, DLQ_TOPIC)
    for position, (good, _, _) in enumerate(dlq):
        if not good:
            assert listed[f"{DLQ_TOPIC}[{partition}]@{first + position}"] == "skipped"
