"""`nova-jobs exporter`: serve /metrics and /health/jobs from the Dagster instance in DAGSTER_HOME."""

from __future__ import annotations

import argparse
import logging
import signal
import time
import traceback

import dagster as dg

from nova_jobs.lib.redact import redact_text
from nova_jobs.observability.server import DEFAULT_REFRESH_SECONDS, Exporter

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9464, help="port to listen on (default 9464)")
    parser.add_argument("--page-size", type=int, default=5000, help="run records read per query")
    parser.add_argument("--refresh-seconds", type=float, default=DEFAULT_REFRESH_SECONDS,
                        help="read the Dagster instance at most this often, whatever the request rate (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="threads computing answers (default 2)")
    parser.add_argument("--max-connections", type=int, default=512, help="open connections; more are closed at once")
    parser.add_argument("--read-timeout", type=float, default=5.0,
                        help="seconds a client has to send its whole request (default 5)")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        instance = dg.DagsterInstance.get()
        exporter = Exporter(instance, refresh_seconds=args.refresh_seconds, page_size=args.page_size)
        began = time.perf_counter()
        exporter.shared.refresh()  # the one full read, before the first scrape
    except Exception:  # noqa: BLE001 - said once, redacted (the instance config may hold a password)
        log.error("cannot read the Dagster instance: %s", redact_text(traceback.format_exc()))
        return 1
    log.info(
        "read %s run records of %s jobs in %.2f s",
        exporter.ledger.records_read, len(exporter.ledger.jobs), time.perf_counter() - began,
    )
    server = exporter.serve(
        args.host, args.port, workers=args.workers, max_connections=args.max_connections,
        read_timeout=args.read_timeout,
    )
    signal.signal(signal.SIGTERM, _stop)
    log.info("serving http://%s:%s/metrics and /health/jobs", args.host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
