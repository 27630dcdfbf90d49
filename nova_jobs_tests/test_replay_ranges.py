"""The replay sensor replays a run launched from the UI: a single-run backfill's message names
the Nova job and carries its partition range in `context`; the replay is one run of that job
over the same range. Real tansu broker, real Dagster instance."""

from __future__ import annotations

import pytest

from nova_jobs.deadletter.message import DLQ_TOPIC
from nova_jobs_tests.dlq_helpers import decisions, encode, ends, make_defs, message, run_replay, send, tick

pytestmark = pytest.mark.integration

RANGE = {"start": "2026-11-01", "end": "2026-11-03"}
RANGE_TAGS = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-03"}


def test_a_backfill_range_is_replayed_as_one_run_of_the_same_range(kafka, instance):
    defs = make_defs(kafka)
    cursor_before = ends(kafka)
    dead = message("daily", context={"launched_as": "__ASSET_JOB", "partition_range": RANGE})
    send(kafka, DLQ_TOPIC, [encode(dead)])
    result = tick(defs, instance, kafka, None)
    [request] = [r for r in result.run_requests if r.tags["nova/replay_of"] == dead["run_id"]]
    assert request.job_name == "daily"
    assert request.partition_key is None
    assert {key: request.tags[key] for key in RANGE_TAGS} == RANGE_TAGS
    replay = run_replay(defs, instance, request)
    assert replay.success
    run = instance.get_run_by_id(replay.run_id)
    assert {key: run.tags[key] for key in RANGE_TAGS} == RANGE_TAGS
    assert "replayed" in [d["state"] for d in decisions(kafka, cursor_before) if d["run_id"] == dead["run_id"]]

    # Another failure of the same range from before the replay succeeded is superseded by it
    # (the range's tags, not any success of the job, decide).
    again = message("daily", context={"partition_range": RANGE})
    other_range = message("daily", context={"partition_range": {"start": "2026-11-05", "end": "2026-11-06"}})
    send(kafka, DLQ_TOPIC, [encode(again), encode(other_range)])
    second = tick(defs, instance, kafka, result.cursor)
    assert [r.tags["nova/replay_of"] for r in second.run_requests] == [other_range["run_id"]]
    states = {d["run_id"]: d["state"] for d in decisions(kafka, cursor_before)}
    assert states[again["run_id"]] == "superseded"


def test_a_range_the_job_does_not_have_is_skipped_not_a_crash(kafka, instance):
    defs = make_defs(kafka)
    cursor_before = ends(kafka)
    bad = message("daily", context={"partition_range": {"start": "2026-11-01", "end": "not-a-day"}})
    unpartitioned = message("plain", context={"partition_range": RANGE})
    send(kafka, DLQ_TOPIC, [encode(bad), encode(unpartitioned)])
    result = tick(defs, instance, kafka, None)
    assert not [r for r in result.run_requests if r.tags["nova/replay_of"] in (bad["run_id"], unpartitioned["run_id"])]
    skipped = {d["run_id"]: d for d in decisions(kafka, cursor_before) if d["state"] == "skipped"}
    assert skipped[bad["run_id"]]["reason"] == "bad_partition"
    assert skipped[unpartitioned["run_id"]]["reason"] == "bad_partition"
