"""`nova-jobs dlq`: what is in the dead-letter queue, and replaying it. Needs only the broker.

    nova-jobs dlq list [--job JOB] [--state STATE] [--json]
    nova-jobs dlq replay CORRELATION_ID
    nova-jobs dlq replay --job JOB --all-parked
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from nova_jobs.deadletter import states
from nova_jobs.deadletter.kafka_io import publish_json, read_topics
from nova_jobs.deadletter.message import (
    CONTROL_TOPIC,
    DLQ_TOPIC,
    DlqMessage,
    MalformedMessage,
    load_json,
    parse_message,
)
from nova_jobs.deadletter.replay_sensor import parse_request, replay_request
from nova_jobs.resources.kafka import KafkaResource

STATE_LABELS = {
    "pending": "pending",
    states.WAITING: "waiting",
    states.PARKED: "parked",
    states.REPLAYED: "replayed",
    states.SUCCEEDED: "succeeded after replay",
    states.REPLAY_FAILED: "replay failed",
    states.SKIPPED: "skipped",
    states.SUPERSEDED: "superseded by a later success",
    "requested": "replay requested",
}


@dataclass
class Entry:
    message: DlqMessage | None
    source: str
    state: str = "pending"
    reason: str = ""
    history: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        base = self.message.to_dict() if self.message else {"error": self.reason}
        return {**base, "state": STATE_LABELS.get(self.state, self.state), "reason": self.reason, "source": self.source}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--brokers", default=None, help="host:port list (default $KAFKA_BROKERS)")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="DLQ messages with their state")
    listing.add_argument("--job", help="only this job")
    listing.add_argument("--state", choices=sorted(STATE_LABELS), help="only messages in this state")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = actions.add_parser("replay", parents=[common], help="ask the replay sensor to re-run failures")
    replay.add_argument("correlation_id", nargs="?", help="replay the latest failure of this correlation id")
    replay.add_argument("--job", help="with --all-parked: the job whose parked failures to replay")
    replay.add_argument("--all-parked", action="store_true", help="every parked failure of --job")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def load_entries(kafka: KafkaResource) -> list[Entry]:
    """Every DLQ record, with the state the replay sensor's decisions and operator requests give
    it. A record that is not a message (or a control record that is neither a decision nor a
    request) is listed as skipped with the reason, as the replay sensor skips it."""
    records, _ = read_topics(kafka, [DLQ_TOPIC, CONTROL_TOPIC], max_records=1_000_000, deadline_seconds=60)
    entries: list[Entry] = []
    by_run: dict[str, Entry] = {}
    requests: list[tuple[str, str, DlqMessage, dict[str, Any]]] = []
    decisions: list[dict[str, Any]] = []
    for record in records:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            if record.topic == CONTROL_TOPIC:
                data = load_json(record.value)
                request = parse_request(data)
                if request is None:
                    decisions.append(data)
                else:
                    requests.append((_text(data.get("requested_at")), request[0], request[1], data))
                continue
            message = parse_message(record.value)
        except MalformedMessage as error:
            entries.append(Entry(None, where, states.SKIPPED, f"malformed: {error}"))
            continue
        if message.run_id in by_run:
            continue  # a duplicate of a message already listed
        entry = Entry(message, where, states.PARKED if message.kind == "permanent" else "pending")
        by_run[message.run_id] = entry
        entries.append(entry)
    events = [(at, "request", data, message) for at, _, message, data in requests]
    events += [(_text(d.get("at")), "decision", d, None) for d in decisions]
    for _, what, data, message in sorted(events, key=lambda e: e[0]):
        if what == "request":
            entry = by_run.get(message.run_id)
            if entry and entry.state not in states.FINAL:
                entry.state = "requested"
                entry.reason = f"by {_text(data.get('requested_by'))[:100]} at {_text(data.get('requested_at'))[:40]}"
            continue
        entry = by_run.get(_text(data.get("run_id")))
        if entry is None:
            continue
        state = _text(data.get("state"))
        # A duplicate record skipped later does not change what happened to the first.
        if state == states.SKIPPED and data.get("reason") == "duplicate" and entry.state != "pending":
            continue
        if entry.state in states.FINAL and state not in states.FINAL:
            continue
        entry.state, entry.reason = state, str(data.get("detail") or data.get("reason") or "")[:500]
    return entries


def _kafka(args: argparse.Namespace) -> KafkaResource:
    return KafkaResource(brokers=args.brokers or os.environ.get("KAFKA_BROKERS", ""))


def run_list(args: argparse.Namespace) -> int:
    entries = load_entries(_kafka(args))
    shown = [e for e in entries if (not args.job or (e.message and e.message.job_name == args.job))
             and (not args.state or e.state == args.state)]
    for entry in shown:
        if args.json:
            print(json.dumps(entry.row(), separators=(",", ":")))
            continue
        m = entry.message
        if m is None:
            print(f"{'-':20}  {'-':15}  {'-':9}  {'skipped':22}  {entry.source}: {entry.reason}")
            continue
        error = f"{m.error_class}: {m.error}".replace("\n", " ")
        print(f"{m.timestamp:20}  {m.job_name:15}  {m.kind:9}  {STATE_LABELS.get(entry.state, entry.state):22}  "
              f"{m.correlation_id}  run {m.run_id}  {error[:100]}")
    if not args.json:
        print(f"{len(shown)} message(s)", file=sys.stderr)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    if bool(args.correlation_id) == bool(args.all_parked):
        print("give a CORRELATION_ID, or --job JOB --all-parked", file=sys.stderr)
        return 2
    if args.all_parked and not args.job:
        print("--all-parked needs --job", file=sys.stderr)
        return 2
    kafka = _kafka(args)
    entries = [e for e in load_entries(kafka) if e.message is not None]
    if args.correlation_id:
        matching = [e for e in entries if e.message.correlation_id == args.correlation_id]
        # The latest failure of that correlation id is the one to run again.
        chosen = sorted(matching, key=lambda e: (e.message.replay_attempt, e.message.timestamp))[-1:]
    else:
        chosen = [e for e in entries if e.message.job_name == args.job and e.state == states.PARKED]
    if not chosen:
        print("nothing to replay", file=sys.stderr)
        return 1
    user = getpass.getuser()
    requests = [replay_request(e.message, uuid.uuid4().hex, user) for e in chosen]
    publish_json(kafka, CONTROL_TOPIC, [(r["message"]["job_name"], r) for r in requests])
    for request in requests:
        m = request["message"]
        print(f"replay requested: {m['job_name']} run {m['run_id']} (correlation {m['correlation_id']}), "
              f"request {request['request_id']}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_list(args) if args.action == "list" else run_replay(args)
