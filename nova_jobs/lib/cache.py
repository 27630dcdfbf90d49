"""Publishing to the Redis caches the Nova API reads.

Each key holds one JSON string written with a single SET, so a reader sees the old value or the
new one, never a partial list and never a missing key (nothing is deleted first). A list and its
`:meta` key are written in one MULTI/EXEC so they always come from the same run. Bulk writes go
in pipelines of `chunk_size` commands.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def publish_with_meta(client: redis.Redis, key: str, value: str, meta: dict[str, Any]) -> None:
    """Replace `key` and `key:meta` together, atomically."""
    with client.pipeline(transaction=True) as pipe:
        pipe.set(key, value)
        pipe.set(f"{key}:meta", dumps(meta))
        pipe.execute()


@dataclass
class BulkWriteResult:
    written: int = 0
    failed: int = 0
    failed_keys: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _set_command(key: str, value: str, ttl: int) -> bytes:
    """`SET key value EX ttl` in the Redis protocol (RESP), packed once, in one format call."""
    k, v, t = key.encode(), value.encode(), str(ttl).encode()
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nEX\r\n$%d\r\n%b\r\n" % (
        len(k), k, len(v), v, len(t), t,
    )


class _PipelineWriter(threading.Thread):
    """Sends batches of SETs from a bounded queue while the caller produces the next ones (a
    ClickHouse stream releases the GIL while it computes): Redis time overlaps query time and
    at most `queue_batches` batches wait in memory.

    Each batch goes out as one packed write on a pooled connection and every reply is read, so
    one key's error (a `ResponseError`) fails that key only. A connection error retries the
    whole batch (SET is idempotent) under the connection's retry policy, then stops the writer;
    the caller re-raises it."""

    def __init__(self, client: redis.Redis, result: BulkWriteResult, on_failure, queue_batches: int) -> None:
        super().__init__(name="redis-pipeline-writer", daemon=True)
        self.client = client
        self.result = result
        self.on_failure = on_failure
        self.queue: queue.Queue[list[tuple[str, str, int]] | None] = queue.Queue(maxsize=queue_batches)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(batch)
                except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                    self.error = error

    def _write(self, batch: list[tuple[str, str, int]]) -> None:
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            replies = connection.retry.call_with_retry(
                lambda: self._round_trip(connection, batch), lambda error: connection.disconnect()
            )
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        for (key, value, _), reply in zip(batch, replies):
            if reply is None:
                self.result.written += 1
                continue
            self.result.failed += 1
            if self.on_failure is not None:
                self.on_failure(key, value)
            if len(self.result.failed_keys) < 20:
                self.result.failed_keys.append(key)
                self.result.errors.append(f"{type(reply).__name__}: {reply}")

    @staticmethod
    def _round_trip(connection, batch: list[tuple[str, str, int]]) -> list[Exception | None]:
        connection.send_packed_command([b"".join(_set_command(*item) for item in batch)])
        replies: list[Exception | None] = []
        for _ in batch:
            try:
                connection.read_response()
                replies.append(None)
            except redis.ResponseError as error:
                replies.append(error)
        return replies


def write_many(
    client: redis.Redis,
    items: Iterable[tuple[str, str]],
    ttl_seconds: int,
    jitter_seconds: int = 0,
    chunk_size: int = 2000,
    on_failure: Callable[[str, str], None] | None = None,
    queue_batches: int = 8,
) -> BulkWriteResult:
    """SET each (key, json) with a TTL, pipelined; one key's failure does not fail the others.

    `items` is consumed in this thread while a writer thread sends the previous batches, so a
    streaming query and the Redis writes overlap; memory holds at most `queue_batches + 2`
    batches of `chunk_size` values. The jitter spreads expiries over a few seconds so that a
    whole population of keys written in one run does not expire in the same second.
    `on_failure(key, value)` is called (from the writer thread) for every key that could not
    be written, for callers that count failures by kind; read the counts after this returns.
    """
    result = BulkWriteResult()
    rng = random.Random()
    writer = _PipelineWriter(client, result, on_failure, queue_batches)
    writer.start()
    batch: list[tuple[str, str, int]] = []
    try:
        for key, value in items:
            batch.append((key, value, ttl_seconds + (rng.randint(0, jitter_seconds) if jitter_seconds else 0)))
            if len(batch) >= chunk_size:
                if writer.error is not None:
                    break
                writer.queue.put(batch)
                batch = []
        if batch and writer.error is None:
            writer.queue.put(batch)
    finally:
        writer.queue.put(None)
        writer.join()
    if writer.error is not None:
        raise writer.error
    return result
