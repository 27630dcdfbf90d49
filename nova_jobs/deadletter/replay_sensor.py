"""Replay dead runs from `jobs-dlq` as new runs of the same job and partition.

Offsets live in the sensor's cursor (a failed tick re-reads, a committed consumer group would
have moved on). Transient failures are replayed after a cool-down, at most
`NOVA_DLQ_MAX_REPLAYS` times per correlation id; permanent ones are parked until an operator
asks (`nova-jobs dlq replay`, a request on `jobs-dlq-replay`). No record stops the sensor: one
that is not a message of the contract (bytes, JSON, types, ranges, sizes), names an unknown job
or a partition the job does not have, or repeats one already handled is skipped, counted, logged
and published as a `skipped` decision with its reason, and the cursor moves past it.

No storms: a failure is `superseded` (not replayed) when a later run of the same job and
partition has succeeded; at most one replay per job and partition is in flight (the others wait,
and are usually superseded by the time it succeeds); at most `NOVA_DLQ_MAX_REPLAYS_PER_TICK`
automatic replays are requested per tick. Operator requests skip the cool-down, the replay
limit and the budget, but wait for a replay in flight. Stored offsets past the end of their
partition (topic recreated, dev broker restarted) are reset to its start with a warning;
duplicates are then recognised from run tags. Every decision goes to `jobs-dlq-replay`, so
`nova-jobs dlq list` can show each message's state from the broker alone.

The cursor (JSON) holds `offsets`, `waiting` (at most `NOVA_DLQ_MAX_WAITING`: when full, the
sensor stops reading that partition rather than drop anything), `awaiting` (replays in flight),
`parked` (run id -> job, at most `MAX_PARKED`, the rest counted per job in `parked_untracked`),
`counts` (cumulative, per reason and decision) and, for the exporter, `summary`:
`{job_name: {"waiting": n, "parked": n, "skipped": n}}` where waiting and parked are the
messages in that state now and skipped is cumulative. Records without a readable job, or naming
a job not in this code location, count under job "unknown" (which keeps metric labels bounded).
A cursor that cannot be read is logged and replaced by a fresh one (reading from the start).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nova_jobs.deadletter import settings, states
from nova_jobs.deadletter.kafka_io import Record, publish_json, read_topics
from nova_jobs.deadletter.observe import observe_queue, table_row
from nova_jobs.deadletter.message import (
    CONTROL_TOPIC,
    DLQ_TOPIC,
    DlqMessage,
    MAX_DEPTH,
    MalformedMessage,
    load_json,
    parse_message,
)
from nova_jobs.deadletter.topics import ensure_topics_once
from nova_jobs.lib.asset_jobs import nova_job_of
from nova_jobs.lib.tags import (
    CORRELATION_TAG,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPLAY_ATTEMPT_TAG,
    REPLAY_OF_TAG,
    REPLAY_REQUEST_TAG,
)
from nova_jobs.lib.redact import redact_text
from nova_jobs.lib.timing import iso_z
from nova_jobs.resources.kafka import KafkaResource

UNKNOWN_JOB = "unknown"
MAX_RECORDS_PER_TICK = 500
MAX_PARKED = 5000
MAX_AWAITING = 1000
CURSOR_MAX_BYTES = 64 * 1024 * 1024
CURSOR_MAX_DEPTH = MAX_DEPTH + 8  # a waiting entry holds a message
# A requested replay that has no run after this long was lost (the daemon never launched it).
REPLAY_START_TIMEOUT = timedelta(minutes=15)
# Timestamps this far ahead of the sensor's clock are not a failure that happened.
CLOCK_SKEW = timedelta(hours=1)
Offset = Annotated[int, Field(ge=0)]
REPLAY, DISCARD = "replay", "discard"
REQUEST_TYPES = {"replay_request": REPLAY, "discard_request": DISCARD}
# Operator actions done, remembered so that asking twice acts once (the oldest are forgotten).
MAX_ACTED = 20_000
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class Candidate:
    message: DlqMessage
    request_id: str | None = None  # set when an operator asked
    fresh: bool = True  # read in this tick (not a waiting one from the cursor)
    source: dict[str, Any] | None = None
    action: str = REPLAY
    reason: str = ""  # the operator's, for a discard
    requested_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message.to_dict(), "request_id": self.request_id, "source": self.source,
                "requested_by": self.requested_by}

    @property
    def key(self) -> str:
        return f"{self.message.run_id}:{self.request_id or ''}"


class _Cursor(BaseModel):
    """The cursor as stored; anything else is a corrupt cursor."""

    model_config = ConfigDict(strict=True, extra="ignore")

    offsets: dict[str, dict[str, Offset]] = Field(default_factory=dict)
    waiting: list[dict[str, Any]] = Field(default_factory=list)
    awaiting: dict[str, dict[str, Any]] = Field(default_factory=dict)
    parked: dict[str, str] = Field(default_factory=dict)
    parked_untracked: dict[str, int] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    details: dict[str, dict[str, Any]] = Field(default_factory=dict)
    acted: dict[str, str] = Field(default_factory=dict)


@dataclass
class ReplayState:
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    awaiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # original run id -> replay info
    counts: dict[str, int] = field(default_factory=dict)
    parked: dict[str, str] = field(default_factory=dict)  # run id -> job name
    parked_untracked: dict[str, int] = field(default_factory=dict)  # job name -> parked beyond MAX_PARKED
    skipped: dict[str, int] = field(default_factory=dict)  # job name -> skipped so far
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # parked run id -> its table row
    acted: dict[str, str] = field(default_factory=dict)  # "action:run id" -> when an operator's request was done
    problem: str | None = None  # why the stored cursor was not usable

    @classmethod
    def load(cls, cursor: str | None) -> ReplayState:
        if not cursor:
            return cls()
        try:
            data = _Cursor.model_validate(load_json(cursor.encode("utf-8", "replace"), CURSOR_MAX_BYTES, CURSOR_MAX_DEPTH))
        except (MalformedMessage, ValidationError) as error:
            return cls(problem=str(error).splitlines()[0][:300])
        return cls(data.offsets, data.waiting, data.awaiting, data.counts, data.parked, data.parked_untracked,
                   data.skipped, data.details, data.acted)

    def summary(self, jobs: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Per job (each of `jobs`, and any other with something to count): messages waiting and
        parked now, skipped so far (what the exporter shows)."""
        table: dict[str, dict[str, int]] = {}

        def row(job: str) -> dict[str, int]:
            return table.setdefault(job, {states.WAITING: 0, states.PARKED: 0, states.SKIPPED: 0})

        for job in jobs:
            row(job)
        for entry in self.waiting:
            row(str((entry.get("message") or {}).get("job_name") or UNKNOWN_JOB))[states.WAITING] += 1
        for job in self.parked.values():
            row(job)[states.PARKED] += 1
        for job, count in self.parked_untracked.items():
            row(job)[states.PARKED] += count
        for job, count in self.skipped.items():
            row(job)[states.SKIPPED] += count
        return table

    def tracking(self) -> dict[str, int]:
        """Parked messages listed one by one, those only counted, and the cap (for the alert)."""
        return {"listed": len(self.parked), "untracked": sum(self.parked_untracked.values()),
                "cap": settings.max_tracked()}

    def dump(self, jobs: Iterable[str] = ()) -> str:
        acted = dict(list(self.acted.items())[-MAX_ACTED:])
        return json.dumps(
            {"offsets": self.offsets, "waiting": self.waiting, "awaiting": self.awaiting, "parked": self.parked,
             "parked_untracked": self.parked_untracked, "counts": self.counts, "skipped": self.skipped,
             "details": {k: v for k, v in self.details.items() if k in self.parked}, "acted": acted,
             "summary": self.summary(jobs), "tracking": self.tracking()},
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


def discard_request(message: DlqMessage, request_id: str, requested_by: str, reason: str) -> dict[str, Any]:
    """What the `dlq_discard` job and `nova-jobs dlq discard` publish on the control topic."""
    return {**replay_request(message, request_id, requested_by), "type": "discard_request", "reason": reason}


def _short_text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


def parse_operator_request(data: Any) -> Candidate | None:
    """An operator's replay or discard request as a candidate; None for the sensor's own
    decisions; MalformedMessage for anything else."""
    if not isinstance(data, dict):
        raise MalformedMessage("control record is not a JSON object")
    if data.get("type") == "decision":
        return None
    action = REQUEST_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if action is None:
        raise MalformedMessage(f"control record of unknown type {str(data.get('type'))[:40]!r}")
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 200 or not request_id.isprintable():
        raise MalformedMessage(f"{action} request without a request_id")
    reason = _short_text(data, "reason", 500).strip()
    if action == DISCARD and not reason:
        raise MalformedMessage("discard request without a reason")
    return Candidate(parse_message(data.get("message")), request_id=request_id, action=action, reason=reason,
                     requested_by=_short_text(data, "requested_by", 200))


def parse_request(data: Any) -> tuple[str, DlqMessage] | None:
    """(request id, message) of an operator's request; None for the sensor's own decisions."""
    candidate = parse_operator_request(data)
    return None if candidate is None else (candidate.request_id or "", candidate.message)




def partition_range_of(message: DlqMessage) -> tuple[str, str] | None:
    """The partition range a single-run backfill covered (`context.partition_range`), if any."""
    bounds = message.context.get("partition_range")
    if isinstance(bounds, dict) and isinstance(bounds.get("start"), str) and isinstance(bounds.get("end"), str):
        return bounds["start"], bounds["end"]
    return None


def scope_of(message: DlqMessage) -> str | None:
    """What a replay of the message covers: its partition, its range ("start...end") or None."""
    bounds = partition_range_of(message)
    if message.partition_key is None and bounds is not None:
        return f"{bounds[0]}...{bounds[1]}"
    return message.partition_key


def scope_tags(message: DlqMessage) -> dict[str, str]:
    """The run tags that say a run covers the message's partition or range."""
    if message.partition_key is not None:
        return {PARTITION_TAG: message.partition_key}
    bounds = partition_range_of(message)
    return {RANGE_START_TAG: bounds[0], RANGE_END_TAG: bounds[1]} if bounds else {}


class Planner:
    """Decides, message by message, what to launch; remembers its own decisions of this tick."""

    def __init__(self, context: dg.SensorEvaluationContext, jobs: dict[str, Any], state: ReplayState,
                 now: datetime) -> None:
        self.context = context
        self.instance = context.instance
        self.jobs = jobs
        self.now = now
        self.cooldown = timedelta(seconds=settings.replay_cooldown_seconds())
        self.max_replays = settings.max_replays()
        self.max_age = timedelta(hours=settings.max_age_hours())
        self.budget = settings.max_replays_per_tick()
        self.operator_budget = settings.operator_replays_per_tick()
        self.max_tracked = settings.max_tracked()
        self.details = dict(state.details)
        self.acted = dict(state.acted)
        self.max_waiting = settings.max_waiting()
        self.run_requests: list[dg.RunRequest] = []
        self.decisions: list[dict[str, Any]] = []
        self.waiting: list[Candidate] = []
        self.waiting_keys: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.parked = dict(state.parked)
        self.parked_untracked = Counter(state.parked_untracked)
        self.planned_runs: set[str] = set()
        self.planned_replays: Counter[str] = Counter()
        self.launched: dict[str, dict[str, Any]] = {}
        self.in_flight: set[tuple[str, str | None]] = {
            (str(info.get("job_name")), info.get("partition_key")) for info in state.awaiting.values()
        }
        self.blocked: dict[tuple[str, int], int] = {}  # (topic, partition) -> first offset not handled
        self._partitions: dict[str, Any] = {}
        self._latest_success: dict[tuple[str, str | None], datetime | None] = {}

    def job_label(self, message: DlqMessage | None) -> str:
        return message.job_name if message is not None and message.job_name in self.jobs else UNKNOWN_JOB

    def skip(self, reason: str, message: DlqMessage | None, detail: str, source: dict[str, Any] | None = None) -> None:
        detail = redact_text(detail)
        self.counts[reason] += 1
        self.skipped[self.job_label(message)] += 1
        self.context.log.warning(f"DLQ replay: skipped ({reason}) {detail}")
        self.decisions.append(decision(states.SKIPPED, message, reason, detail=detail, source=source))

    def _replays_so_far(self, correlation_id: str) -> int:
        existing = self.instance.get_runs_count(dg.RunsFilter(tags={CORRELATION_TAG: correlation_id}))
        return existing + self.planned_replays[correlation_id]

    def _already_replayed(self, candidate: Candidate) -> bool:
        if candidate.key in self.planned_runs:
            return True
        tags = {REPLAY_REQUEST_TAG: candidate.request_id} if candidate.request_id else {REPLAY_OF_TAG: candidate.message.run_id}
        return self.instance.get_runs_count(dg.RunsFilter(tags=tags)) > 0

    def _partitions_def(self, job_name: str) -> Any:
        if job_name not in self._partitions:
            job = self.jobs[job_name]
            try:
                # The resolved job knows its assets' partitions; an unresolved asset job may not.
                repository = self.context.repository_def
                if repository is not None and repository.has_job(job_name):
                    job = repository.get_job(job_name)
            except dg.DagsterInvariantViolationError:
                pass
            self._partitions[job_name] = getattr(job, "partitions_def", None)
        return self._partitions[job_name]

    def partition_problem(self, message: DlqMessage) -> str | None:
        """Why a run of the message's job cannot have its partition key, if it cannot."""
        partitions = self._partitions_def(message.job_name)
        key = message.partition_key
        bounds = partition_range_of(message)
        if bounds is not None and key is None:
            if partitions is None:
                return f"job {message.job_name} is not partitioned, message names partition range {bounds!r}"
            for bound in bounds:
                try:
                    if not partitions.has_partition_key(bound):
                        return f"job {message.job_name} has no partition {bound!r}"
                except Exception as error:  # noqa: BLE001
                    return f"partition {bound!r} of {message.job_name}: {type(error).__name__}"
            return None
        if partitions is None:
            return None if key is None else f"job {message.job_name} is not partitioned, message names partition {key!r}"
        if key is None:
            return f"job {message.job_name} is partitioned, message names no partition"
        try:
            if partitions.has_partition_key(key):
                return None
        except Exception as error:  # noqa: BLE001 - a key the definition cannot even read is not one of its keys
            return f"partition {key!r} of {message.job_name}: {type(error).__name__}"
        return f"job {message.job_name} has no partition {key!r}"

    def _superseded_by(self, message: DlqMessage) -> datetime | None:
        """When the latest successful run of the message's job and partition was created, if
        after the failure."""
        scope = (message.job_name, scope_of(message))
        if scope not in self._latest_success:
            tags = scope_tags(message) or None
            records = self.instance.get_run_records(
                filters=dg.RunsFilter(job_name=message.job_name, statuses=[dg.DagsterRunStatus.SUCCESS], tags=tags),
                limit=1,
            )
            created = records[0].create_timestamp if records else None
            if created is not None and created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            self._latest_success[scope] = created
        latest = self._latest_success[scope]
        return latest if latest is not None and latest > message.failed_at else None

    def _wait(self, candidate: Candidate, why: str) -> None:
        if candidate.key in self.waiting_keys:
            return
        source = candidate.source or {}
        if candidate.fresh and len(self.waiting) >= self.max_waiting and source.get("topic"):
            # Not tracked, not dropped: the partition is read again from this record next tick.
            where = (str(source["topic"]), int(source["partition"]))
            self.blocked.setdefault(where, int(source["offset"]))
            self.counts["deferred"] += 1
            self.context.log.warning(
                f"DLQ replay: {len(self.waiting)} messages already waiting (NOVA_DLQ_MAX_WAITING); "
                f"{where[0]}[{where[1]}] is read again from offset {source['offset']} next tick"
            )
            return
        self.waiting.append(candidate)
        self.waiting_keys.add(candidate.key)
        if candidate.fresh:
            self.decisions.append(decision(states.WAITING, candidate.message, why))

    def consider(self, candidate: Candidate) -> None:
        message = candidate.message
        what = f"{message.job_name} run {message.run_id} (correlation {message.correlation_id})"
        source = candidate.source
        if f"{DISCARD}:{message.run_id}" in self.acted:
            self.skip("duplicate", message, f"{what}: discarded by an operator", source)
            return
        if candidate.action == DISCARD:
            self._discard(candidate, what)
            return
        if candidate.request_id is not None and f"{REPLAY}:{message.run_id}" in self.acted:
            self.skip("duplicate", message, f"{what}: already replayed at an operator's request", source)
            return
        if message.job_name not in self.jobs:
            self.skip("unknown_job", message, f"{what}: no job {message.job_name!r} in this code location", source)
            return
        problem = self.partition_problem(message)
        if problem is not None:
            self.skip("bad_partition", message, f"{what}: {problem}", source)
            return
        if candidate.key in self.waiting_keys or self._already_replayed(candidate):
            self.skip("duplicate", message, f"{what}: already handled", source)
            return
        if message.failed_at > self.now + CLOCK_SKEW:
            self.skip("future", message, f"{what}: failed at {message.timestamp}, in the future", source)
            return
        if candidate.request_id is None:
            if message.kind != "transient":
                self._park(candidate, what)
                return
            if self.now - message.failed_at > self.max_age:
                # Kept (parked, shown as expired) for an operator to replay or discard.
                self.counts[states.EXPIRED] += 1
                self._park(candidate, what, f"expired: failed at {message.timestamp}, older than "
                                            "NOVA_DLQ_MAX_AGE_HOURS, not replayed automatically")
                return
            if self._replays_so_far(message.correlation_id) >= self.max_replays:
                self.skip("max_replays", message, f"{what}: {self.max_replays} replays already made", source)
                return
            later = self._superseded_by(message)
            if later is not None:
                self.counts[states.SUPERSEDED] += 1
                self.context.log.info(f"DLQ replay: superseded {what}: a run of the job succeeded at {iso_z(later)}")
                self.decisions.append(decision(states.SUPERSEDED, message, f"a later run succeeded (created {iso_z(later)})",
                                               partition_key=message.partition_key))
                return
            if message.failed_at + self.cooldown > self.now:
                self._wait(candidate, f"replay after {iso_z(message.failed_at + self.cooldown)}")
                return
        if (message.job_name, scope_of(message)) in self.in_flight:
            self._wait(candidate, "a replay of the same job and partition is in flight")
            return
        if candidate.request_id is None and self.budget <= 0:
            self._wait(candidate, "replay budget of this tick spent (NOVA_DLQ_MAX_REPLAYS_PER_TICK)")
            return
        if candidate.request_id is not None and self.operator_budget <= 0:
            self._wait(candidate, "redrive rate reached (NOVA_DLQ_REDRIVE_PER_TICK)")
            return
        self._launch(candidate)

    def _park(self, candidate: Candidate, what: str, why: str = "permanent failure: waits for an operator") -> None:
        message = candidate.message
        if message.run_id in self.parked:
            self.skip("duplicate", message, f"{what}: already parked", candidate.source)
            return
        if len(self.parked) < min(MAX_PARKED, self.max_tracked):
            self.parked[message.run_id] = message.job_name
            self.details[message.run_id] = table_row(message)
        else:
            self.parked_untracked[message.job_name] += 1
            self.context.log.warning(f"DLQ replay: more than {len(self.parked)} parked messages (NOVA_DLQ_MAX_TRACKED); "
                                     f"{what} is counted, not listed")
        self.counts[states.PARKED] += 1
        self.context.log.info(f"DLQ replay: parked {what}: {message.kind} {message.error_class}")
        self.decisions.append(decision(states.PARKED, message, why))

    def _discard(self, candidate: Candidate, what: str) -> None:
        """An operator's discard: final, whatever state the message was in."""
        message = candidate.message
        if self.parked.pop(message.run_id, None) is None and message.kind == "permanent" \
                and self.parked_untracked[message.job_name] > 0:
            self.parked_untracked[message.job_name] -= 1
        self.details.pop(message.run_id, None)
        kept = [c for c in self.waiting if c.message.run_id != message.run_id]
        if len(kept) != len(self.waiting):
            self.waiting = kept
            self.waiting_keys = {c.key for c in kept}
        self.acted[f"{DISCARD}:{message.run_id}"] = iso_z(self.now)
        self.counts[states.DISCARDED] += 1
        self.context.log.info(f"DLQ replay: discarded {what} at the request of {candidate.requested_by or '?'} "
                              f"({candidate.request_id}): {redact_text(candidate.reason)}")
        self.decisions.append(decision(states.DISCARDED, message, redact_text(candidate.reason),
                                       request_id=candidate.request_id, requested_by=candidate.requested_by))

    def _launch(self, candidate: Candidate) -> None:
        message = candidate.message
        attempt = self._replays_so_far(message.correlation_id) + 1
        original = self.instance.get_run_by_id(message.run_id)
        # The same work as the failed run: its config (as_of, top_k, ...) and partition.
        # A run launched from the UI as `__ASSET_JOB` has the same ops (and op config) as the
        # Nova job its message names.
        same_work = original is not None and (nova_job_of(original) or original.job_name) == message.job_name
        run_config = dict(original.run_config) if same_work else {}
        tags = {CORRELATION_TAG: message.correlation_id, REPLAY_OF_TAG: message.run_id, REPLAY_ATTEMPT_TAG: str(attempt)}
        if message.partition_key is None:
            # A single-run backfill's range: the replay covers the same hours in one run.
            tags.update(scope_tags(message))
        run_key = f"dlq-replay:{message.correlation_id}:{message.run_id}"
        if candidate.request_id:
            tags[REPLAY_REQUEST_TAG] = candidate.request_id
            run_key += f":{candidate.request_id}"
            self.operator_budget -= 1
            self.acted[f"{REPLAY}:{message.run_id}"] = iso_z(self.now)
        else:
            self.budget -= 1
        self.run_requests.append(
            dg.RunRequest(run_key=run_key, job_name=message.job_name, run_config=run_config, tags=tags,
                          partition_key=message.partition_key)
        )
        self.planned_runs.add(candidate.key)
        self.planned_replays[message.correlation_id] += 1
        self.in_flight.add((message.job_name, scope_of(message)))
        if self.parked.pop(message.run_id, None) is None and self.parked_untracked[message.job_name] > 0 \
                and message.kind == "permanent":
            self.parked_untracked[message.job_name] -= 1
        self.details.pop(message.run_id, None)
        self.launched[message.run_id] = {**table_row(message), "correlation_id": message.correlation_id,
                                          "job_name": message.job_name,
                                          "partition_key": scope_of(message), "run_key": run_key,
                                          "since": iso_z(self.now)}
        self.counts[states.REPLAYED] += 1
        by = f" at the request of {candidate.request_id}" if candidate.request_id else ""
        self.context.log.info(f"DLQ replay: {message.job_name} run {message.run_id} as attempt {attempt}{by} ({run_key})")
        self.decisions.append(decision(states.REPLAYED, message,
                                       "operator request" if candidate.request_id else "transient failure",
                                       replay_run_key=run_key, replay_attempt=attempt, request_id=candidate.request_id))


def consider_records(records: Sequence[Record], planner: Planner) -> None:
    """Each record in order, unless its partition was blocked earlier in the tick."""
    for record in records:
        if (record.topic, record.partition) in planner.blocked:
            continue
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            if record.topic == DLQ_TOPIC:
                candidate = Candidate(parse_message(record.value), source=source)
            else:
                candidate = parse_operator_request(load_json(record.value))
                if candidate is None:
                    continue  # the sensor's own decisions
                candidate.source = source
        except MalformedMessage as error:
            planner.skip("malformed", None, f"{where}: {error}", source)
            continue
        planner.consider(candidate)


def check_outcomes(instance: dg.DagsterInstance, awaiting: dict[str, dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Decisions for replays that have finished (or never started); removes them from `awaiting`."""
    if not awaiting:
        return []
    outcomes = []
    runs = instance.get_runs(filters=dg.RunsFilter(tags={REPLAY_OF_TAG: list(awaiting)}))
    seen = set()
    for run in runs:
        original = run.tags.get(REPLAY_OF_TAG)
        seen.add(original)
        info = awaiting.get(original)
        if info is None or run.status not in DONE:
            continue
        state = states.SUCCEEDED if run.status == dg.DagsterRunStatus.SUCCESS else states.REPLAY_FAILED
        outcomes.append(decision(state, None, f"replay run {run.run_id} {run.status.value}", job_name=run.job_name,
                                 correlation_id=info.get("correlation_id"), run_id=original, replay_run_id=run.run_id))
        del awaiting[original]
    for original, info in list(awaiting.items()):
        try:
            since = datetime.fromisoformat(str(info.get("since")).replace("Z", "+00:00"))
        except ValueError:
            since = now - REPLAY_START_TIMEOUT
        if original not in seen and now - since >= REPLAY_START_TIMEOUT:
            outcomes.append(decision(states.REPLAY_FAILED, None, "replay run never started", job_name=info.get("job_name"),
                                     correlation_id=info.get("correlation_id"), run_id=original))
            del awaiting[original]
    return outcomes


def build_replay_sensor(jobs: Sequence[Any], name: str = "dlq_replay_sensor") -> dg.SensorDefinition:
    """The replay sensor, able to launch any of `jobs` (every job of the code location)."""
    by_name = {job.name: job for job in jobs}

    @dg.sensor(
        name=name,
        jobs=list(jobs),
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Replays transient failures from Kafka topic jobs-dlq, and parked ones an operator asks for.",
    )
    def dlq_replay_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
        state = ReplayState.load(context.cursor)
        problem = ensure_topics_once(kafka)
        if problem:
            context.log.warning(f"DLQ replay: {problem}")
        if state.problem:
            context.log.warning(f"DLQ replay: cursor unreadable ({state.problem}); starting over from the start "
                                "of the topics (duplicates are recognised from run tags)")
        now = datetime.now(UTC)
        resets: list[str] = []
        records, offsets = read_topics(kafka, [DLQ_TOPIC, CONTROL_TOPIC], state.offsets, max_records=MAX_RECORDS_PER_TICK,
                                       on_reset=resets.append)
        for reset in resets:
            context.log.warning(f"DLQ replay: {reset}")

        awaiting = dict(state.awaiting)
        outcomes = check_outcomes(context.instance, awaiting, now)
        state.awaiting = awaiting
        planner = Planner(context, by_name, state, now)
        waiting = []
        for entry in state.waiting:
            try:
                request_id = entry.get("request_id")
                by = entry.get("requested_by")
                waiting.append(Candidate(parse_message(entry.get("message")),
                                         request_id if isinstance(request_id, str) else None, fresh=False,
                                         source=entry.get("source") if isinstance(entry.get("source"), dict) else None,
                                         requested_by=by[:200] if isinstance(by, str) else ""))
            except MalformedMessage as error:
                planner.skip("malformed", None, f"waiting entry of the cursor: {error}")
        for candidate in sorted(waiting, key=lambda c: c.message.failed_at):
            planner.consider(candidate)
        consider_records(records, planner)
        for (topic, partition), offset in planner.blocked.items():
            offsets[topic][str(partition)] = offset

        awaiting.update(planner.launched)
        if len(awaiting) > MAX_AWAITING:
            context.log.warning(f"DLQ replay: {len(awaiting)} replays awaited; forgetting the oldest "
                                f"{len(awaiting) - MAX_AWAITING} (their outcome will not be published)")
            awaiting = dict(list(awaiting.items())[-MAX_AWAITING:])
        # Publish decisions before moving the cursor: if Kafka fails now, the tick fails and
        # the same records are read again (duplicates are then recognised from run tags).
        publish_json(kafka, CONTROL_TOPIC, [(d.get("job_name") or UNKNOWN_JOB, d) for d in planner.decisions + outcomes])

        counts = Counter(state.counts)
        counts.update(planner.counts)
        skipped = Counter(state.skipped)
        skipped.update(planner.skipped)
        new_state = ReplayState(offsets, [c.to_json() for c in planner.waiting], awaiting, dict(counts),
                                planner.parked, {k: v for k, v in planner.parked_untracked.items() if v > 0},
                                dict(skipped), planner.details, planner.acted)
        tracking = new_state.tracking()
        if tracking["listed"] >= tracking["cap"]:
            context.log.warning(f"DLQ replay: {tracking['listed'] + tracking['untracked']} parked messages, the cap of "
                                f"{tracking['cap']} listed is reached (NOVA_DLQ_MAX_TRACKED): replay or discard them")
        observation = observe_queue(new_state, by_name, now)
        summary = ", ".join(f"{k} {v}" for k, v in sorted(planner.counts.items())) or "nothing new"
        if resets:
            summary += f"; {len(resets)} offset(s) reset"
        if not planner.run_requests:
            return dg.SensorResult(skip_reason=f"{len(records)} records read: {summary}; {len(planner.waiting)} waiting",
                                   cursor=new_state.dump(by_name), asset_events=[observation])
        context.log.info(f"DLQ replay tick: {len(records)} records read: {summary}")
        return dg.SensorResult(run_requests=planner.run_requests, cursor=new_state.dump(by_name),
                               asset_events=[observation])

    return dlq_replay_sensor
