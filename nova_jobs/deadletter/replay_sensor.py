"""Replay dead runs from `jobs-dlq` as new runs of the same job and partition.

Offsets live in the sensor's cursor (a failed tick re-reads, a committed consumer group would
have moved on). Transient failures are replayed after a cool-down, at most
`NOVA_DLQ_MAX_REPLAYS` times per correlation id; permanent ones are parked until an operator
asks (`nova-jobs dlq replay`, a request on `jobs-dlq-replay`). A malformed record, an unknown
job or a duplicate is skipped, counted and logged. Every decision is also published to
`jobs-dlq-replay`, so `nova-jobs dlq list` can show each message's state from the broker alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from nova_jobs.deadletter import settings
from nova_jobs.deadletter.kafka_io import Record, publish_json, read_topics
from nova_jobs.deadletter.message import (
    CONTROL_TOPIC,
    CORRELATION_TAG,
    DLQ_TOPIC,
    REPLAY_ATTEMPT_TAG,
    REPLAY_OF_TAG,
    DlqMessage,
    MalformedMessage,
    parse_message,
)
from nova_jobs.lib.timing import iso_z
from nova_jobs.resources.kafka import KafkaResource

REQUEST_TAG = "nova/replay_request"
MAX_RECORDS_PER_TICK = 500
MAX_TRACKED = 1000


@dataclass
class Candidate:
    message: DlqMessage
    request_id: str | None = None  # set when an operator asked
    fresh: bool = True  # read in this tick (not a cooled-down one from the cursor)
    source: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message.to_dict(), "request_id": self.request_id, "source": self.source}


@dataclass
class ReplayState:
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    awaiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # original run id -> replay info
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: str | None) -> ReplayState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(data.get("offsets", {}), data.get("waiting", []), data.get("awaiting", {}), data.get("counts", {}))

    def dump(self) -> str:
        return json.dumps(
            {"offsets": self.offsets, "waiting": self.waiting[-MAX_TRACKED:], "awaiting": self.awaiting, "counts": self.counts},
            separators=(",", ":"),
        )


def decision(state: str, message: DlqMessage | None, reason: str = "", **extra: Any) -> dict[str, Any]:
    record = {
        "schema_version": 1,
        "type": "decision",
        "state": state,
        "reason": reason,
        "at": iso_z(datetime.now(UTC)),
        "job_name": message.job_name if message else None,
        "correlation_id": message.correlation_id if message else None,
        "run_id": message.run_id if message else None,
    }
    record.update(extra)
    return record


def replay_request(message: DlqMessage, request_id: str, requested_by: str) -> dict[str, Any]:
    """What `nova-jobs dlq replay` publishes on the control topic."""
    return {
        "schema_version": 1,
        "type": "replay_request",
        "request_id": request_id,
        "requested_at": iso_z(datetime.now(UTC)),
        "requested_by": requested_by,
        "message": message.to_dict(),
    }


class Planner:
    """Decides, message by message, what to launch; remembers its own decisions of this tick."""

    def __init__(self, context: dg.SensorEvaluationContext, known_jobs: set[str], now: datetime) -> None:
        self.context = context
        self.instance = context.instance
        self.known_jobs = known_jobs
        self.now = now
        self.cooldown = timedelta(seconds=settings.replay_cooldown_seconds())
        self.max_replays = settings.max_replays()
        self.max_age = timedelta(hours=settings.max_age_hours())
        self.run_requests: list[dg.RunRequest] = []
        self.decisions: list[dict[str, Any]] = []
        self.waiting: list[Candidate] = []
        self.counts: Counter[str] = Counter()
        self.planned_runs: set[str] = set()
        self.planned_replays: Counter[str] = Counter()
        self.launched: dict[str, dict[str, Any]] = {}

    def skip(self, reason: str, message: DlqMessage | None, detail: str, source: dict[str, Any] | None = None) -> None:
        self.counts[reason] += 1
        self.context.log.warning(f"DLQ replay: skipped ({reason}) {detail}")
        self.decisions.append(decision("skipped", message, reason, detail=detail, source=source))

    def _replays_so_far(self, correlation_id: str) -> int:
        existing = self.instance.get_runs_count(dg.RunsFilter(tags={CORRELATION_TAG: correlation_id}))
        return existing + self.planned_replays[correlation_id]

    def _already_replayed(self, candidate: Candidate) -> bool:
        key = f"{candidate.message.run_id}:{candidate.request_id or ''}"
        if key in self.planned_runs:
            return True
        tags = {REQUEST_TAG: candidate.request_id} if candidate.request_id else {REPLAY_OF_TAG: candidate.message.run_id}
        return self.instance.get_runs_count(dg.RunsFilter(tags=tags)) > 0

    def consider(self, candidate: Candidate) -> None:
        message = candidate.message
        what = f"{message.job_name} run {message.run_id} (correlation {message.correlation_id})"
        if message.job_name not in self.known_jobs:
            self.skip("unknown_job", message, f"{what}: no job {message.job_name!r} in this code location", candidate.source)
            return
        if self._already_replayed(candidate):
            self.skip("duplicate", message, f"{what}: already replayed", candidate.source)
            return
        if candidate.request_id is None:
            if message.kind != "transient":
                self.counts["parked"] += 1
                self.context.log.info(f"DLQ replay: parked {what}: permanent {message.error_class}")
                self.decisions.append(decision("parked", message, "permanent failure: waits for an operator"))
                return
            if self.now - message.failed_at > self.max_age:
                self.skip("stale", message, f"{what}: failed at {message.timestamp}, too old to replay", candidate.source)
                return
            if self._replays_so_far(message.correlation_id) >= self.max_replays:
                self.skip("max_replays", message, f"{what}: {self.max_replays} replays already made", candidate.source)
                return
            if message.failed_at + self.cooldown > self.now:
                self.waiting.append(candidate)
                if candidate.fresh:
                    self.decisions.append(decision("waiting", message, f"replay after {iso_z(message.failed_at + self.cooldown)}"))
                return
        self._launch(candidate)

    def _launch(self, candidate: Candidate) -> None:
        message = candidate.message
        attempt = self._replays_so_far(message.correlation_id) + 1
        original = self.instance.get_run_by_id(message.run_id)
        # The same work as the failed run: its config (as_of, top_k, ...) and partition.
        run_config = dict(original.run_config) if original is not None and original.job_name == message.job_name else {}
        tags = {CORRELATION_TAG: message.correlation_id, REPLAY_OF_TAG: message.run_id, REPLAY_ATTEMPT_TAG: str(attempt)}
        run_key = f"dlq-replay:{message.correlation_id}:{message.run_id}"
        if candidate.request_id:
            tags[REQUEST_TAG] = candidate.request_id
            run_key += f":{candidate.request_id}"
        self.run_requests.append(
            dg.RunRequest(
                run_key=run_key,
                job_name=message.job_name,
                run_config=run_config,
                tags=tags,
                partition_key=message.partition_key,
            )
        )
        self.planned_runs.add(f"{message.run_id}:{candidate.request_id or ''}")
        self.planned_replays[message.correlation_id] += 1
        self.launched[message.run_id] = {"correlation_id": message.correlation_id, "job_name": message.job_name,
                                          "run_key": run_key, "since": iso_z(self.now)}
        self.counts["replayed"] += 1
        by = f" at the request of {candidate.request_id}" if candidate.request_id else ""
        self.context.log.info(f"DLQ replay: {message.job_name} run {message.run_id} as attempt {attempt}{by} ({run_key})")
        self.decisions.append(decision("replayed", message, "operator request" if candidate.request_id else "transient failure",
                                       replay_run_key=run_key, replay_attempt=attempt, request_id=candidate.request_id))


def candidates_from(records: Sequence[Record], planner: Planner) -> list[Candidate]:
    found: list[Candidate] = []
    for record in records:
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if record.topic == DLQ_TOPIC:
            try:
                found.append(Candidate(parse_message(record.value), source=source))
            except MalformedMessage as error:
                planner.skip("malformed", None, f"{where}: {error}", source)
            continue
        try:
            data = json.loads(record.value or b"")
        except (UnicodeDecodeError, json.JSONDecodeError):
            planner.skip("malformed", None, f"{where}: control record is not JSON", source)
            continue
        if not isinstance(data, dict) or data.get("type") != "replay_request":
            continue  # the sensor's own decisions
        try:
            request_id = str(data["request_id"])
            found.append(Candidate(parse_message(data.get("message")), request_id=request_id, source=source))
        except (KeyError, MalformedMessage) as error:
            planner.skip("malformed", None, f"{where}: bad replay request: {error}", source)
    return found


def check_outcomes(instance: dg.DagsterInstance, awaiting: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions for replays that have finished; removes them from `awaiting`."""
    if not awaiting:
        return []
    outcomes = []
    runs = instance.get_runs(filters=dg.RunsFilter(tags={REPLAY_OF_TAG: list(awaiting)}))
    for run in runs:
        original = run.tags.get(REPLAY_OF_TAG)
        info = awaiting.get(original)
        if info is None or run.status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            continue
        state = "succeeded" if run.status == dg.DagsterRunStatus.SUCCESS else "replay_failed"
        outcomes.append({
            "schema_version": 1, "type": "decision", "state": state, "reason": f"replay run {run.run_id} {run.status.value}",
            "at": iso_z(datetime.now(UTC)), "job_name": run.job_name, "correlation_id": info["correlation_id"],
            "run_id": original, "replay_run_id": run.run_id,
        })
        del awaiting[original]
    return outcomes


def build_replay_sensor(jobs: Sequence[Any], name: str = "dlq_replay_sensor") -> dg.SensorDefinition:
    """The replay sensor, able to launch any of `jobs` (every job of the code location)."""
    known_jobs = {job.name for job in jobs}

    @dg.sensor(
        name=name,
        jobs=list(jobs),
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Replays transient failures from Kafka topic jobs-dlq, and parked ones an operator asks for.",
    )
    def dlq_replay_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
        state = ReplayState.load(context.cursor)
        now = datetime.now(UTC)
        records, offsets = read_topics(kafka, [DLQ_TOPIC, CONTROL_TOPIC], state.offsets, MAX_RECORDS_PER_TICK)

        planner = Planner(context, known_jobs, now)
        cooled = []
        for entry in state.waiting:
            try:
                cooled.append(Candidate(parse_message(entry["message"]), entry.get("request_id"), fresh=False,
                                        source=entry.get("source")))
            except (KeyError, MalformedMessage):
                continue
        for candidate in cooled + candidates_from(records, planner):
            planner.consider(candidate)

        awaiting = dict(state.awaiting)
        outcomes = check_outcomes(context.instance, awaiting)
        awaiting.update(planner.launched)
        # Publish decisions before moving the cursor: if Kafka fails now, the tick fails and
        # the same records are read again (duplicates are then recognised from run tags).
        publish_json(kafka, CONTROL_TOPIC, [(d.get("job_name") or "unknown", d) for d in planner.decisions + outcomes])

        counts = Counter(state.counts)
        counts.update(planner.counts)
        new_state = ReplayState(offsets, [c.to_json() for c in planner.waiting], dict(list(awaiting.items())[-MAX_TRACKED:]),
                                dict(counts))
        summary = ", ".join(f"{k} {v}" for k, v in sorted(planner.counts.items())) or "nothing new"
        if not planner.run_requests:
            return dg.SensorResult(skip_reason=f"{len(records)} records read: {summary}; {len(planner.waiting)} cooling down",
                                   cursor=new_state.dump())
        context.log.info(f"DLQ replay tick: {len(records)} records read: {summary}")
        return dg.SensorResult(run_requests=planner.run_requests, cursor=new_state.dump())

    return dlq_replay_sensor
