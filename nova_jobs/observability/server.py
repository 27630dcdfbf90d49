"""The exporter's HTTP server: `/metrics` (Prometheus text) and `/health/jobs` (JSON).

Built to hold against slow or hostile clients on a shared network:
- connections are read by one asyncio loop, so a client that sends half a request costs a
  socket, not a thread; its whole request head must arrive within `read_timeout` seconds
  (a client dripping a byte at a time is cut off too) and the reply must be taken within
  `write_timeout`; beyond `max_connections` open connections a new one is closed at once;
- answers are computed by a pool of `workers` threads;
- the Dagster instance is read at most once per `refresh_seconds`, whatever the request rate:
  requests in between are answered from the last read (`SharedRefresh`);
- a failure answers a generic body; the details go to the log, redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import dagster as dg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nova_jobs.lib.redact import redact_text
from nova_jobs.observability.health import health_report
from nova_jobs.observability.ledger import RunLedger
from nova_jobs.observability.metrics import build_registry

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 5.0
FAILED_BODY = json.dumps(
    {"healthy": False, "error": "the exporter could not answer; the reason is in its log"}
).encode()


class InstanceReadFailed(RuntimeError):
    """The last read of the Dagster instance failed; the next is not due yet."""


class SharedRefresh:
    """The ledger as the metrics and the health report see it: `refresh()` reads the instance
    at most once per `interval` seconds; callers in between (or waiting while a read runs) use
    that read. A failed read is not retried before the interval is over either."""

    def __init__(self, ledger: RunLedger, interval: float) -> None:
        self._ledger = ledger
        self.interval = interval
        self.instance_reads = 0
        self._gate = threading.Lock()
        self._last_read: float | None = None
        self._last_failed = False

    def refresh(self) -> None:
        with self._gate:
            now = time.monotonic()
            if self._last_read is not None and now - self._last_read < self.interval:
                if self._last_failed:
                    raise InstanceReadFailed("the last read of the Dagster instance failed")
                return
            self._last_read = now
            self.instance_reads += 1
            self._last_failed = True
            self._ledger.refresh()
            self._last_failed = False

    def __getattr__(self, name: str):
        # Everything else (jobs, started_at, counters) is the ledger's own.
        return getattr(self._ledger, name)


class Exporter:
    def __init__(
        self,
        instance: dg.DagsterInstance,
        intervals: dict[str, int] | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        **ledger_options,
    ) -> None:
        self.ledger = RunLedger(instance, **ledger_options)
        self.shared = SharedRefresh(self.ledger, refresh_seconds)
        self.intervals = intervals
        self.registry = build_registry(self.shared, intervals)
        # One answer computed at a time: the ledger is not read while it is being updated.
        self._answer_lock = threading.Lock()

    def metrics(self) -> bytes:
        with self._answer_lock:
            return generate_latest(self.registry)

    def health(self) -> tuple[int, dict]:
        with self._answer_lock:
            self.shared.refresh()
            return health_report(self.ledger, intervals=self.intervals)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) for a GET of `path`."""
        if path == "/metrics":
            return HTTPStatus.OK, self.metrics(), CONTENT_TYPE_LATEST
        if path == "/health/jobs":
            status, body = self.health()
            return status, json.dumps(body, indent=2).encode(), "application/json"
        if path in ("/", "/healthz"):
            return HTTPStatus.OK, b"ok\n", "text/plain"
        return HTTPStatus.NOT_FOUND, b"try /metrics or /health/jobs\n", "text/plain"

    def serve(self, host: str, port: int, **limits) -> ExporterServer:
        """A server bound to host:port; call `serve_forever()` on it (or use a thread)."""
        return ExporterServer(self, host, port, **limits)


async def _cancel_connections() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ExporterServer:
    """HTTP/1.1, one request per connection, with the limits in the module docstring."""

    def __init__(
        self,
        exporter: Exporter,
        host: str,
        port: int,
        workers: int = 2,
        max_connections: int = 512,
        read_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_head_bytes: int = 16 * 1024,
    ) -> None:
        self.exporter = exporter
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.open_connections = 0
        self.timed_out = 0
        self.refused = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nova-exporter")
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, host, port, limit=max_head_bytes, backlog=256)
        )
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._stopped = threading.Event()
        self._stopped.set()

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._loop.run_forever()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread) and wait for it to return."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._stopped.wait()

    def server_close(self) -> None:
        if self._loop.is_closed():
            return
        self._server.close()
        self._loop.run_until_complete(_cancel_connections())
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            self.refused += 1
            writer.transport.abort()
            return
        self.open_connections += 1
        try:
            await self._serve_one(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            if isinstance(error, TimeoutError):
                self.timed_out += 1
            writer.transport.abort()
        finally:
            self.open_connections -= 1

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The whole head within the deadline, not each read: a slow drip is cut off too.
        async with asyncio.timeout(self.read_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, body, content_type = HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n", "text/plain"
        else:
            status, body, content_type = await self._loop.run_in_executor(self._pool, self._answer, path)
        reply = (
            f"HTTP/1.1 {int(status)} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(reply if method == "HEAD" else reply + body)
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()
        writer.close()

    def _answer(self, path: str) -> tuple[int, bytes, str]:
        try:
            return self.exporter.answer(path)
        except Exception:  # noqa: BLE001 - the operator's answer is a 503; the reason goes to the log
            log.error("serving %s failed: %s", path, redact_text(traceback.format_exc()))
            return HTTPStatus.SERVICE_UNAVAILABLE, FAILED_BODY, "application/json"
