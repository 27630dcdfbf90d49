"""`nova-jobs exporter`: serve /metrics and /health/jobs from the Dagster instance in DAGSTER_HOME."""

from __future__ import annotations

import argparse
import logging
import signal
import time

import dagster as dg

from nova_jobs.observability.server import Exporter

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9464, help="port to listen on (default 9464)")
    parser.add_argument("--page-size", type=int, default=5000, help="run records read per query")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    instance = dg.DagsterInstance.get()
    exporter = Exporter(instance, page_size=args.page_size)
    began = time.perf_counter()
    exporter.ledger.refresh()  # the one full read, before the first scrape
    log.info(
        "read %s run records of %s jobs in %.2f s",
        exporter.ledger.records_read, len(exporter.ledger.jobs), time.perf_counter() - began,
    )
    server = exporter.serve(args.host, args.port)
    signal.signal(signal.SIGTERM, _stop)
    log.info("serving http://%s:%s/metrics and /health/jobs", args.host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
