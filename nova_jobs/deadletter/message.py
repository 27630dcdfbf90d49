"""The dead-letter message of the contract: built from a failed run, parsed when read back.

`retry_count` counts the retries made before the run was given up: op retries inside the run
(one per `STEP_UP_FOR_RETRY` event) plus the run-level re-executions before it
(`dagster/retry_number`). Replays are not retries; they are counted by `replay_attempt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from nova_jobs.lib.asset_jobs import asset_selection_of, is_internal_job, nova_job_of, partition_scope
from nova_jobs.lib.errors import classify_error_info, classify_links, error_info_chain, root_link
from nova_jobs.lib.redact import redact_text
from nova_jobs.lib.timing import iso_z

SCHEMA_VERSION = 1
DLQ_TOPIC = "jobs-dlq"
# Operator replay requests and the replay sensor's decisions, so `nova-jobs dlq list` needs
# nothing but the broker.
CONTROL_TOPIC = "jobs-dlq-replay"

# Run tags (the exporter and the helm values rely on these names).
PUBLISHED_TAG = "nova/dlq_published"
CORRELATION_TAG = "nova/correlation_id"
REPLAY_OF_TAG = "nova/replay_of"
REPLAY_ATTEMPT_TAG = "nova/replay_attempt"
OUTCOME_PUBLISHED_TAG = "nova/dlq_outcome_published"
WILL_RETRY_TAG = "dagster/will_retry"
RETRY_NUMBER_TAG = "dagster/retry_number"
ROOT_RUN_TAG = "dagster/root_run_id"
PARTITION_TAG = "dagster/partition"
FAILURE_REASON_TAG = "dagster/failure_reason"

PARENT_RUN_TAG = "dagster/parent_run_id"

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


class MalformedMessage(ValueError):
    """A record on the DLQ topic that is not a message of the contract."""


@dataclass(frozen=True)
class DlqMessage:
    job_name: str
    error: str
    error_class: str
    kind: str
    timestamp: str
    retry_count: int
    correlation_id: str
    run_id: str
    partition_key: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    replay_of: str | None = None
    replay_attempt: int = 0
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "job_name": self.job_name,
            "error": self.error,
            "error_class": self.error_class,
            "kind": self.kind,
            "timestamp": self.timestamp,
            "retry_count": self.retry_count,
            "correlation_id": self.correlation_id,
            "run_id": self.run_id,
            "partition_key": self.partition_key,
            "context": self.context,
            "replay_of": self.replay_of,
            "replay_attempt": self.replay_attempt,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=False).encode("utf-8")

    @property
    def failed_at(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise MalformedMessage(f"field {name!r} missing or not {getattr(kind, '__name__', kind)}")
    return value


def parse_message(value: bytes | str | dict | None) -> DlqMessage:
    """A DLQ record's value as a message, or MalformedMessage saying why not."""
    if value is None:
        raise MalformedMessage("empty record")
    if isinstance(value, dict):
        data = value
    else:
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedMessage(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise MalformedMessage("not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise MalformedMessage(f"unsupported schema_version {data.get('schema_version')!r}")
    kind = _require(data, "kind", str)
    if kind not in KINDS:
        raise MalformedMessage(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    message = DlqMessage(
        job_name=_require(data, "job_name", str),
        error=str(data.get("error", "")),
        error_class=str(data.get("error_class", "")),
        kind=kind,
        timestamp=_require(data, "timestamp", str),
        retry_count=int(data.get("retry_count") or 0),
        correlation_id=_require(data, "correlation_id", str),
        run_id=_require(data, "run_id", str),
        partition_key=data.get("partition_key") if isinstance(data.get("partition_key"), str) else None,
        context=data.get("context") if isinstance(data.get("context"), dict) else {},
        replay_of=data.get("replay_of") if isinstance(data.get("replay_of"), str) else None,
        replay_attempt=int(data.get("replay_attempt") or 0),
    )
    try:
        message.failed_at  # noqa: B018 - validates the timestamp
    except ValueError:
        raise MalformedMessage(f"timestamp {message.timestamp!r} is not ISO-8601") from None
    if not message.job_name or not message.correlation_id or not message.run_id:
        raise MalformedMessage("empty job_name, correlation_id or run_id")
    return message


def published_marker(run_id: str) -> dict[str, str]:
    """The tag that says this run's message is on the topic. It names the run, because Dagster
    copies a run's tags to its re-executions, which must still be published themselves."""
    return {PUBLISHED_TAG: run_id}


def is_legacy_marker(value: str) -> bool:
    """Markers written before they named their run held the publish time."""
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def run_monitoring_reason(message: str | None) -> str | None:
    """The run-monitoring reason a RUN_FAILURE message states, if it is one of the daemon's."""
    for prefix, reason in RUN_MONITORING_FAILURES:
        if message and message.startswith(prefix):
            return reason
    return None


def correlation_id_of(run: dg.DagsterRun) -> str:
    """Kept across replays (tag) and run-level re-executions (root run)."""
    return run.tags.get(CORRELATION_TAG) or run.tags.get(ROOT_RUN_TAG) or run.run_id


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
