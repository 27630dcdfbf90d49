"""`nova-jobs load-demo`: create the source tables and load the demo data set."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict

from nova_jobs.lib.settings import SettingError
from nova_jobs.resources.clickhouse import ClickHouseResource, validate_clickhouse_url
from nova_jobs_dev.demo.freshen import event_span, shift_to_now
from nova_jobs_dev.demo.generate import generate_demo, store_is_empty

log = logging.getLogger("nova_jobs.demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clickhouse-url", default=os.environ.get("CLICKHOUSE_URL"),
                        help="default: $CLICKHOUSE_URL")
    parser.add_argument("--database", default=os.environ.get("CLICKHOUSE_DATABASE", "nova"),
                        help="default: $CLICKHOUSE_DATABASE or nova")
    parser.add_argument("--users", type=int, default=20_000, help="users in the data set (default 20000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--if-empty", action="store_true", help="load only when post_events is empty")
    parser.add_argument("--keep-fresh", action="store_true",
                        help="when the data is already there, move it in time so its newest event is now")


def run(args: argparse.Namespace) -> int:
    try:
        if not args.clickhouse_url:
            raise SettingError("CLICKHOUSE_URL is not set (or pass --clickhouse-url)")
        validate_clickhouse_url(args.clickhouse_url)
        if args.users < 10:
            raise SettingError(f"--users={args.users} must be at least 10")
    except SettingError as error:
        log.error("%s", error)
        return 2
    resource = ClickHouseResource(url=args.clickhouse_url, database=args.database)
    with resource.get_client() as client:
        if args.if_empty and not store_is_empty(client, resource.database_name):
            moved = shift_to_now(client, resource.database_name) if args.keep_fresh else 0
            log.info("demo data already present in %s on %s; nothing loaded%s", resource.database_name,
                     resource.display_url, f", moved {moved / 3600:.1f} h forward to now" if moved else "")
            _show_span(client, resource.database_name)
            return 0
        stats = generate_demo(client, resource.database_name, users=args.users, seed=args.seed)
        _show_span(client, resource.database_name)
    print(json.dumps(asdict(stats)))
    return 0


def _show_span(client, database: str) -> None:
    # trending_history's partitions start 2026-01-01; only these hours have anything to snapshot.
    span = event_span(client, database)
    if span is not None:
        log.info("demo events span %s; trending_history partitions with data: %s",
                 f"{span.first:%Y-%m-%d %H:%M} .. {span.last:%Y-%m-%d %H:%M} UTC", span.hours())
