"""The exporter's HTTP server: `/metrics` (Prometheus text) and `/health/jobs` (JSON)."""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nova_jobs.observability.health import health_report
from nova_jobs.observability.ledger import RunLedger
from nova_jobs.observability.metrics import build_registry

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, instance: dg.DagsterInstance, intervals: dict[str, int] | None = None, **ledger_options) -> None:
        self.ledger = RunLedger(instance, **ledger_options)
        self.intervals = intervals
        self.registry = build_registry(self.ledger, intervals)
        self._health_lock = threading.Lock()

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> tuple[int, dict]:
        self.ledger.refresh()
        return health_report(self.ledger, intervals=self.intervals)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """A server bound to host:port; call `serve_forever()` on it (or use a thread)."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        self._reply(HTTPStatus.OK, exporter.metrics(), CONTENT_TYPE_LATEST)
                    elif path == "/health/jobs":
                        status, body = exporter.health()
                        self._reply(status, json.dumps(body, indent=2).encode(), "application/json")
                    elif path in ("/", "/healthz"):
                        self._reply(HTTPStatus.OK, b"ok\n", "text/plain")
                    else:
                        self._reply(HTTPStatus.NOT_FOUND, b"try /metrics or /health/jobs\n", "text/plain")
                except Exception as error:  # noqa: BLE001 - a failed read is the operator's answer
                    log.exception("serving %s failed", path)
                    body = json.dumps({"healthy": False, "error": f"{type(error).__name__}: {error}"}).encode()
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("%s " + fmt, self.address_string(), *args)

        return ThreadingHTTPServer((host, port), Handler)
