"""The dead-letter message of the contract: built from a failed run, parsed when read back.

`retry_count` counts the retries made before the run was given up: op retries inside the run
(one per `STEP_UP_FOR_RETRY` event) plus the run-level re-executions before it
(`dagster/retry_number`). Replays are not retries; they are counted by `replay_attempt`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_type_hints

import dagster as dg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from nova_jobs.lib.asset_jobs import asset_selection_of, is_internal_job, nova_job_of, partition_scope
from nova_jobs.lib.errors import classify_error_info, classify_links, error_info_chain, root_link
from nova_jobs.lib.redact import redact_text
from nova_jobs.lib.tags import (
    FAILURE_REASON_TAG,
    PARENT_RUN_TAG,
    PARTITION_TAG,
    PUBLISHED_TAG,
    REPLAY_ATTEMPT_TAG,
    REPLAY_OF_TAG,
    RETRY_NUMBER_TAG,
    correlation_id,
)
from nova_jobs.lib.timing import iso_z

SCHEMA_VERSION = 1
DLQ_TOPIC = "jobs-dlq"
# Operator replay requests and the replay sensor's decisions, so `nova-jobs dlq list` needs
# nothing but the broker.
CONTROL_TOPIC = "jobs-dlq-replay"

KINDS = ("transient", "permanent")
# A run that died outside op code (killed, never started) is worth another try.
TRANSIENT_RUN_FAILURES = {"UNEXPECTED_TERMINATION", "START_TIMEOUT", "RUN_WORKER_RESTART"}
# Run monitoring fails a run whose worker died (pod OOMKilled or evicted, process killed) or ran
# past `dagster/max_runtime` without a `dagster/failure_reason` tag; its RUN_FAILURE message is
# all that says so (texts of dagster/_daemon/monitoring/run_monitoring.py, Dagster 1.13).
RUN_MONITORING_FAILURES = (
    ("Detected run worker status", "WORKER_DIED"),
    ("Exceeded maximum runtime of", "MAX_RUNTIME"),
    ("This job is being forcibly marked as failed", "MAX_RUNTIME"),
    ("Run timed out due to taking longer than", "START_TIMEOUT"),
    ("This run has been marked as failed from outside the execution context", "UNEXPECTED_TERMINATION"),
)
MAX_ERROR_CHARS = 4000


# Bounds for reading records back: a message of the contract is a few kB (its error is capped
# at MAX_ERROR_CHARS); anything beyond these is not one.
MAX_RECORD_BYTES = 64 * 1024
MAX_DEPTH = 16
MAX_INT_DIGITS = 30
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 16_000
MAX_COUNT = 1_000_000
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(3000, 1, 1, tzinfo=UTC)

# Job names and run ids: printable ASCII without spaces; labels (correlation id, partition key):
# no control characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[!-~]+$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Version = Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]  # strict: True is not 1
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
ClassName = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]


def _aware_timestamp(value: str) -> str:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    # Far-off years would overflow the cool-down arithmetic.
    if not MIN_TIME <= moment < MAX_TIME:
        raise ValueError(f"timestamp outside {MIN_TIME.year}-{MAX_TIME.year - 1}")
    return value


Timestamp = Annotated[str, StringConstraints(max_length=64), AfterValidator(_aware_timestamp)]


class MalformedMessage(ValueError):
    """A record on the DLQ topic that is not a message of the contract."""


@dataclass(frozen=True, kw_only=True)
class DlqMessage:
    """A message of the contract, its fields in the contract's order. Each field's type is also
    what a record read back must hold: `parse_message` checks records against `_Schema`, the
    pydantic model derived from these fields."""

    schema_version: Version = SCHEMA_VERSION
    job_name: Name
    error: Text = ""
    error_class: ClassName = ""
    kind: Literal["transient", "permanent"]
    timestamp: Timestamp
    retry_count: Count = 0
    correlation_id: Label
    run_id: Name
    partition_key: Label | None = None
    context: dict[str, Any] = field(default_factory=dict)
    replay_of: Name | None = None
    replay_attempt: Count = 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=False).encode("utf-8")

    @property
    def failed_at(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))


def _read_back_model() -> type[BaseModel]:
    """The contract's message, as read back: DlqMessage's fields, types and defaults, strict (no
    "3" for 3), frozen; extra fields are ignored (the contract may grow). A message built here is
    of this version; a record read back must say which it is: `schema_version` has no default."""
    hints = get_type_hints(DlqMessage, include_extras=True)

    def read_back(f: Any) -> tuple[Any, Any]:
        if f.name == "schema_version" or (f.default is MISSING and f.default_factory is MISSING):
            return hints[f.name], ...
        if f.default is MISSING:
            return hints[f.name], Field(default_factory=f.default_factory)
        return hints[f.name], f.default

    config = ConfigDict(strict=True, extra="ignore", frozen=True)
    return create_model("_Schema", __config__=config, **{f.name: read_back(f) for f in fields(DlqMessage)})


_Schema = _read_back_model()


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:20]} overflows")
    return number


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _depth(value: Any, limit: int) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > limit:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_json(value: bytes | str | None, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """A record's JSON value, refusing what could hurt the reader: more than `MAX_RECORD_BYTES`,
    nesting deeper than `MAX_DEPTH`, huge integers, NaN and overflowing numbers, text that is
    not UTF-8. Raises MalformedMessage saying why."""
    if value is None:
        raise MalformedMessage("empty record")
    if len(value) > max_bytes:
        raise MalformedMessage(f"record of {len(value)} bytes, more than {max_bytes}")
    try:
        data = json.loads(value, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedMessage("JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError, TypeError) as error:
        raise MalformedMessage(f"not JSON: {str(error)[:200]}") from None
    _check_document(data, max_depth)
    return data


def _check_document(data: Any, max_depth: int = MAX_DEPTH) -> None:
    if _depth(data, max_depth) > max_depth:
        raise MalformedMessage(f"JSON nested deeper than {max_depth}")
    try:
        # Lone surrogates parse, but cannot be written back as UTF-8 (keys, logs, decisions).
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError) as error:
        raise MalformedMessage(f"not UTF-8 JSON: {type(error).__name__}") from None


def _explain(error: ValidationError) -> str:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"field {where!r}: {first['msg'][:200]}{more}"


def parse_message(value: Any) -> DlqMessage:
    """A DLQ record's value as a message, or MalformedMessage saying why not. Never raises
    anything else, whatever the value."""
    if isinstance(value, dict):
        data = value
        _check_document(data)
    elif value is None or isinstance(value, bytes | str):
        data = load_json(value)
    else:
        raise MalformedMessage(f"a {type(value).__name__}, not a JSON object")
    if not isinstance(data, dict):
        raise MalformedMessage("not a JSON object")
    try:
        valid = _Schema.model_validate(data)
    except ValidationError as error:
        raise MalformedMessage(_explain(error)) from None
    except (RecursionError, ValueError, TypeError) as error:
        raise MalformedMessage(f"invalid: {type(error).__name__}") from None
    return DlqMessage(**dict(valid))


def published_marker(run_id: str) -> dict[str, str]:
    """The tag that says this run's message is on the topic. It names the run, because Dagster
    copies a run's tags to its re-executions, which must still be published themselves."""
    return {PUBLISHED_TAG: run_id}


_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def is_published(run: dg.DagsterRun, instance: dg.DagsterInstance | None = None) -> bool:
    """Whether the failure sensor published this run itself.

    The marker names the run it was written for; a UI re-execution copies its parent's tags, so
    a marker naming another run says nothing about this one. Markers written before they named
    their run (a publish time) count as this run's own, unless `instance` shows the parent
    carries the same one (then it was copied)."""
    marker = run.tags.get(PUBLISHED_TAG)
    if not marker:
        return False
    if run.run_id in marker:
        return True
    if _RUN_ID.search(marker):
        return False
    parent_id = run.tags.get(PARENT_RUN_TAG)
    if instance is None or not parent_id:
        return True
    parent = instance.get_run_by_id(parent_id)
    return parent is None or parent.tags.get(PUBLISHED_TAG) != marker


def run_monitoring_reason(message: str | None) -> str | None:
    """The run-monitoring reason a RUN_FAILURE message states, if it is one of the daemon's."""
    for prefix, reason in RUN_MONITORING_FAILURES:
        if message and message.startswith(prefix):
            return reason
    return None


def correlation_id_of(run: dg.DagsterRun) -> str:
    """Kept across replays (tag) and run-level re-executions (root run): `lib.tags`."""
    return correlation_id(run.tags, run.run_id)


def job_context(run: dg.DagsterRun) -> dict[str, Any]:
    """What the job was doing: the trending window, and the ops' run config when given. For a
    run launched as Dagster's `__ASSET_JOB` (the UI's "Materialize", a backfill), also what it
    was launched as, its asset selection and the partition range of a single-run backfill: what
    a replay needs to run the same thing again."""
    from nova_jobs.trending.windows import WINDOWS

    context: dict[str, Any] = {}
    job_name = nova_job_of(run) or run.job_name
    for window in WINDOWS.values():
        if job_name == window.job_name:
            context["window"] = window.name
    if is_internal_job(run.job_name):
        context["launched_as"] = run.job_name
        context["asset_selection"] = asset_selection_of(run)
        scope = partition_scope(run.tags)
        if "partition_range_start" in scope:
            context["partition_range"] = {"start": scope["partition_range_start"], "end": scope["partition_range_end"]}
    ops = (run.run_config or {}).get("ops") if isinstance(run.run_config, dict) else None
    if ops:
        context["ops_config"] = {
            op: entry.get("config") for op, entry in ops.items() if isinstance(entry, dict) and entry.get("config")
        }
    return context


def _metadata_text(user_failure_data: Any, key: str) -> str | None:
    metadata = getattr(user_failure_data, "metadata", None) or {}
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return value if isinstance(value, str) else None


def build_message(instance: dg.DagsterInstance, run: dg.DagsterRun, failed_at: datetime | None = None) -> DlqMessage:
    """The DLQ message for a run that failed for good, from its event log."""
    records = instance.get_records_for_run(
        run.run_id,
        of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY},
        limit=1000,
    ).records
    events = [record.event_log_entry.dagster_event for record in records if record.event_log_entry.dagster_event]
    step_failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    run_failures = [e for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    op_retries = sum(1 for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)

    error_info = None
    declared_kind = declared_class = None
    if step_failures:
        data = step_failures[0].event_specific_data
        error_info = getattr(data, "error", None)
        declared_kind = _metadata_text(getattr(data, "user_failure_data", None), "error_kind")
        declared_class = _metadata_text(getattr(data, "user_failure_data", None), "error_class")
    elif run_failures:
        error_info = getattr(run_failures[-1].event_specific_data, "error", None)

    links = error_info_chain(error_info)
    root = root_link(links)
    run_failure_text = run_failures[-1].message if run_failures else None
    monitored = run_monitoring_reason(run_failure_text)
    if monitored is not None:
        # The worker did not end the run itself: whatever a step recorded on the way down (an
        # interrupt), the run is worth another try.
        error = run_failure_text or ""
        error_class = f"RunFailure.{run.tags.get(FAILURE_REASON_TAG) or monitored}"
        kind = "transient"
    elif root is not None:
        error, error_class = root.message, declared_class or root.cls_name
        kind = declared_kind if declared_kind in KINDS else classify_links(links)
    else:
        # The run died without an error of its own (killed, failed to start).
        reason = run.tags.get(FAILURE_REASON_TAG, "UNKNOWN")
        error = run_failures[-1].message if run_failures and run_failures[-1].message else f"run failed: {reason}"
        error_class = f"RunFailure.{reason}"
        kind = "transient" if reason in TRANSIENT_RUN_FAILURES else classify_error_info(None)

    replay_attempt = run.tags.get(REPLAY_ATTEMPT_TAG, "0")
    return DlqMessage(
        # The Nova job a UI-launched run stands for, so replay, metrics and alerts follow it.
        job_name=nova_job_of(run) or run.job_name,
        error=redact_text(error)[:MAX_ERROR_CHARS],
        error_class=error_class,
        kind=kind,
        timestamp=iso_z(failed_at or datetime.now(UTC)),
        retry_count=op_retries + int(run.tags.get(RETRY_NUMBER_TAG, "0") or 0),
        correlation_id=correlation_id_of(run),
        run_id=run.run_id,
        partition_key=run.tags.get(PARTITION_TAG),
        context=job_context(run),
        replay_of=run.tags.get(REPLAY_OF_TAG),
        replay_attempt=int(replay_attempt) if replay_attempt.isdigit() else 0,
    )
