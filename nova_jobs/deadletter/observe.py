"""The DLQ as an observed asset: after each tick the replay sensor records what the queue holds,
as numbers the UI plots over time and a table of the unresolved messages."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from nova_jobs.deadletter import settings, states
from nova_jobs.deadletter.message import DlqMessage

if TYPE_CHECKING:
    from nova_jobs.deadletter.replay_sensor import ReplayState

DLQ_ASSET_KEY = dg.AssetKey(["kafka", "jobs_dlq"])
MAX_TABLE_ROWS = 200  # the oldest; the counts cover all

dlq_asset = dg.AssetSpec(
    key=DLQ_ASSET_KEY,
    description="Kafka topic jobs-dlq: runs that failed for good, and what became of them. Observed by "
                "dlq_replay_sensor on each tick (counts per state and job, the oldest unresolved message's "
                "age, a table of the unresolved ones). Replay or discard with the dlq_replay and "
                "dlq_discard jobs.",
    group_name="dead_letter",
    kinds={"kafka"},
    metadata={"topic": "jobs-dlq", "control_topic": "jobs-dlq-replay"},
)

TABLE_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("job", "string"),
    dg.TableColumn("state", "string"),
    dg.TableColumn("kind", "string"),
    dg.TableColumn("error_class", "string"),
    dg.TableColumn("root_cause", "string"),
    dg.TableColumn("failed_at", "string"),
    dg.TableColumn("replays", "int"),
    dg.TableColumn("correlation_id", "string"),
    dg.TableColumn("failed_run", "string", description="link to the failed run in the Dagster UI"),
])


def table_row(message: DlqMessage) -> dict[str, Any]:
    """What the DLQ table shows of a message (the error cut short: a cursor holds thousands)."""
    return {"job_name": message.job_name, "kind": message.kind, "error_class": message.error_class[:200],
            "error": message.error[:300], "timestamp": message.timestamp, "replay_attempt": message.replay_attempt,
            "correlation_id": message.correlation_id, "run_id": message.run_id}


def _failed_at(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unresolved_rows(state: ReplayState, now: datetime) -> list[dict[str, Any]]:
    """Every message still waiting for something (a cool-down, an operator, its replay run),
    oldest first; waiting and parked ones older than NOVA_DLQ_MAX_AGE_HOURS are `expired`."""
    max_age = timedelta(hours=settings.max_age_hours())
    rows = []
    for entry in state.waiting:
        message = entry.get("message") or {}
        rows.append({**{k: message.get(k) for k in ("job_name", "kind", "error_class", "error", "timestamp",
                                                     "replay_attempt", "correlation_id", "run_id")},
                     "state": states.WAITING})
    for run_id, row in state.details.items():
        if run_id in state.parked:
            rows.append({**row, "state": states.PARKED})
    for run_id, info in state.awaiting.items():
        # Replays awaited since before the table existed know only their job and correlation id.
        rows.append({"kind": "", "error_class": "", "error": "", "replay_attempt": 0, **info,
                     "timestamp": info.get("timestamp") or info.get("since"), "run_id": run_id,
                     "state": states.REPLAYED})
    for row in rows:
        failed = _failed_at(row.get("timestamp"))
        row["failed_at"] = failed
        if row["state"] != states.REPLAYED and failed is not None and now - failed > max_age:
            row["state"] = states.EXPIRED
    return sorted(rows, key=lambda r: r["failed_at"] or now)


def _record(row: dict[str, Any], base_url: str) -> dg.TableRecord:
    return dg.TableRecord({
        "job": str(row.get("job_name") or ""),
        "state": row["state"],
        "kind": str(row.get("kind") or ""),
        "error_class": str(row.get("error_class") or ""),
        "root_cause": str(row.get("error") or "")[:300],
        "failed_at": str(row.get("timestamp") or ""),
        "replays": int(row.get("replay_attempt") or 0),
        "correlation_id": str(row.get("correlation_id") or ""),
        "failed_run": f"{base_url}/runs/{row.get('run_id')}",
    })


def observe_queue(state: ReplayState, jobs: dict[str, Any], now: datetime) -> dg.AssetObservation:
    rows = unresolved_rows(state, now)
    by_state = Counter(row["state"] for row in rows)
    untracked = sum(state.parked_untracked.values())
    by_state[states.PARKED] += untracked  # counted, not listed
    by_job = Counter(str(row.get("job_name") or "unknown") for row in rows)
    for job, count in state.parked_untracked.items():
        by_job[job] += count
    oldest = min((row["failed_at"] for row in rows if row["failed_at"] is not None), default=None)
    metadata: dict[str, Any] = {
        "unresolved": dg.MetadataValue.int(len(rows) + untracked),
        "oldest_unresolved_age_seconds": dg.MetadataValue.float(
            max(0.0, (now - oldest).total_seconds()) if oldest else 0.0),
        "tracked_cap": dg.MetadataValue.int(settings.max_tracked()),
        "untracked_parked": dg.MetadataValue.int(untracked),
    }
    for name in (states.WAITING, states.PARKED, states.REPLAYED, states.EXPIRED):
        metadata[f"state/{name}"] = dg.MetadataValue.int(by_state[name])
    for name in sorted(set(jobs) | set(by_job)):
        metadata[f"job/{name}"] = dg.MetadataValue.int(by_job[name])
    for name in (states.DISCARDED, states.SKIPPED, states.SUPERSEDED, states.REPLAYED):
        metadata[f"total/{name}"] = dg.MetadataValue.int(
            sum(state.skipped.values()) if name == states.SKIPPED else int(state.counts.get(name, 0)))
    base_url = settings.ui_base_url()
    metadata["messages"] = dg.MetadataValue.table(
        records=[_record(row, base_url) for row in rows[:MAX_TABLE_ROWS]], schema=TABLE_SCHEMA)
    return dg.AssetObservation(asset_key=DLQ_ASSET_KEY, metadata=metadata,
                               description=f"{len(rows) + untracked} unresolved; table lists the oldest "
                                           f"{min(len(rows), MAX_TABLE_ROWS)}")
