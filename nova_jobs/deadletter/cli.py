"""`nova-jobs dlq`: what is in the dead-letter queue, and replaying it. Needs only the broker.

    nova-jobs dlq list [--job JOB] [--state STATE] [--json]
    nova-jobs dlq replay CORRELATION_ID
    nova-jobs dlq replay --job JOB --all-parked
    nova-jobs dlq discard CORRELATION_ID --reason TEXT
    nova-jobs dlq discard --job JOB --all-parked --reason TEXT

The `dlq_replay` and `dlq_discard` jobs in the Dagster launchpad do the same with the same code
(`select_entries`, `operator_requests`).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sys
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
from nova_jobs.deadletter.replay_sensor import DISCARD, REPLAY, discard_request, parse_request, replay_request
from nova_jobs.deadletter.topics import ensure_topics_once
from nova_jobs.resources import kafka_resource_from_env
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
    states.DISCARDED: "discarded",
    "requested": "replay requested",
    "discard_requested": "discard requested",
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
    discard = actions.add_parser("discard", parents=[common], help="ask the replay sensor to drop failures for good")
    discard.add_argument("correlation_id", nargs="?", help="discard the latest failure of this correlation id")
    discard.add_argument("--job", help="with --all-parked: the job whose parked failures to discard")
    discard.add_argument("--all-parked", action="store_true", help="every parked failure of --job")
    discard.add_argument("--reason", required=True, help="why (kept with the decision on jobs-dlq-replay)")


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
                entry.state = "discard_requested" if data.get("type") == "discard_request" else "requested"
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
    # The resource the jobs and sensors get, from the same variables, checked as a run checks it.
    kafka = kafka_resource_from_env(args.brokers)
    kafka.bootstrap_servers  # a bad setting is the error to report, not a topic-creation failure
    # Without admin rights (or a broker) the topics may still exist: reading or publishing next
    # reports a broker that is really down.
    ensure_topics_once(kafka)
    return kafka


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


class SelectionError(ValueError):
    """An operator's selector that names nothing, or names it badly."""


def selector_problem(correlation_ids: list[str], job_name: str, all_parked: bool) -> str | None:
    if bool(correlation_ids) == bool(all_parked):
        return "give correlation id(s), or a job name with all_parked (not both)"
    if all_parked and not job_name:
        return "all_parked needs a job name"
    return None


def select_entries(entries: list[Entry], correlation_ids: list[str], job_name: str = "",
                   all_parked: bool = False) -> list[Entry]:
    """The messages an operator's selector names, oldest first (the order they are released in):
    the latest failure of each correlation id, or every parked (or expired) one of a job."""
    problem = selector_problem(correlation_ids, job_name, all_parked)
    if problem:
        raise SelectionError(problem)
    found = [e for e in entries if e.message is not None]
    chosen = []
    if all_parked:
        chosen = [e for e in found if e.message.job_name == job_name and e.state == states.PARKED]
    for correlation_id in dict.fromkeys(correlation_ids):
        matching = [e for e in found if e.message.correlation_id == correlation_id]
        if not matching:
            raise SelectionError(f"no DLQ message has correlation id {correlation_id[:200]!r}")
        # The latest failure of that correlation id is the one to act on.
        chosen += sorted(matching, key=lambda e: (e.message.replay_attempt, e.message.timestamp))[-1:]
    return sorted(chosen, key=lambda e: e.message.failed_at)


def request_id(action: str, selector: str, run_id: str) -> str:
    """The same selector on the same message gives the same id: asking twice acts once."""
    return hashlib.sha256(f"{action}\n{selector}\n{run_id}".encode()).hexdigest()[:32]


def operator_requests(chosen: list[Entry], action: str, selector: str, requested_by: str,
                      reason: str = "") -> list[dict[str, Any]]:
    requests = []
    for entry in chosen:
        rid = request_id(action, selector, entry.message.run_id)
        if action == DISCARD:
            requests.append(discard_request(entry.message, rid, requested_by, reason))
        else:
            requests.append(replay_request(entry.message, rid, requested_by))
    return requests


def publish_requests(kafka: KafkaResource, requests: list[dict[str, Any]]) -> None:
    publish_json(kafka, CONTROL_TOPIC, [(r["message"]["job_name"], r) for r in requests])


def run_request(args: argparse.Namespace, action: str) -> int:
    correlation_ids = [args.correlation_id] if args.correlation_id else []
    reason = (getattr(args, "reason", "") or "").strip()
    if action == DISCARD and not reason:
        print("--reason must not be empty", file=sys.stderr)
        return 2
    problem = selector_problem(correlation_ids, args.job or "", args.all_parked)
    if problem:
        print("give a CORRELATION_ID, or --job JOB --all-parked" if "not both" in problem else "--all-parked needs --job",
              file=sys.stderr)
        return 2
    kafka = _kafka(args)
    try:
        chosen = select_entries(load_entries(kafka), correlation_ids, args.job or "", args.all_parked)
    except SelectionError as error:
        print(f"nothing to {action}: {error}", file=sys.stderr)
        return 1
    if not chosen:
        print(f"nothing to {action}", file=sys.stderr)
        return 1
    selector = args.correlation_id or f"job={args.job} all_parked"
    requests = operator_requests(chosen, action, selector, getpass.getuser(), reason)
    publish_requests(kafka, requests)
    for request in requests:
        m = request["message"]
        print(f"{action} requested: {m['job_name']} run {m['run_id']} (correlation {m['correlation_id']}), "
              f"request {request['request_id']}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return run_list(args)
    return run_request(args, DISCARD if args.action == "discard" else REPLAY)
