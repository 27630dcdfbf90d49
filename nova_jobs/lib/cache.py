"""Publishing to the Redis caches the Nova API reads.

Each key holds one JSON string written with a single SET, so a reader sees the old value or the
new one, never a partial list and never a missing key (nothing is deleted first). A list and its
`:meta` key are written in one MULTI/EXEC so they always come from the same run. Bulk writes go
in pipelines of `chunk_size` commands.

A key Redis rejects fails the run (`settle_rejected_writes`): a replica after a failover, memory
full under `noeviction` or a TTL Redis refuses would otherwise give a green run while the
caches expire. The previous values stay, since nothing is deleted first.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from nova_jobs.lib.errors import ErrorKind, classified_failure, classify
from nova_jobs.lib.settings import SettingError, setting_int

if TYPE_CHECKING:
    import redis

# Redis accepts `EX` up to what fits a signed 64-bit count of milliseconds once added to now;
# ten years is far beyond any cache and far below that.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def publish_with_meta(client: redis.Redis, key: str, value: str, meta: dict[str, Any]) -> None:
    """Replace `key` and `key:meta` together, atomically."""
    with client.pipeline(transaction=True) as pipe:
        pipe.set(key, value)
        pipe.set(f"{key}:meta", dumps(meta))
        pipe.execute()


@dataclass
class Rejection:
    """The keys Redis rejected with one error class."""

    kind: ErrorKind
    count: int
    sample: str  # the first reply's text


@dataclass
class BulkWriteResult:
    written: int = 0
    failed: int = 0
    failed_keys: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejections: dict[str, Rejection] = field(default_factory=dict)  # by error class

    def reject(self, key: str, error: Exception) -> None:
        self.failed += 1
        name = type(error).__name__
        kind = classify(error)
        rejection = self.rejections.get(name)
        if rejection is None:
            self.rejections[name] = Rejection(kind, 1, str(error))
        else:
            rejection.count += 1
            # A plain ResponseError may carry a passing reply or not: one that cannot pass decides.
            if kind == "permanent":
                rejection.kind = kind
        if len(self.failed_keys) < 20:
            self.failed_keys.append(key)
            self.errors.append(f"{name}: {error}")

    @property
    def kind(self) -> ErrorKind:
        """Transient only when every rejection may pass: one that cannot makes any retry fail too."""
        kinds = {rejection.kind for rejection in self.rejections.values()}
        return "transient" if kinds == {"transient"} else "permanent"

    @property
    def error_class(self) -> str:
        """The most frequent error class of the deciding kind."""
        deciding = [(r.count, name) for name, r in self.rejections.items() if r.kind == self.kind]
        return max(deciding)[1] if deciding else "ResponseError"


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
            self.result.reject(key, reply)
            if self.on_failure is not None:
                self.on_failure(key, value)

    @staticmethod
    def _round_trip(connection, batch: list[tuple[str, str, int]]) -> list[Exception | None]:
        import redis

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


def resolve_max_failed_keys(explicit: int | None = None) -> int:
    """Keys a bulk write may fail before its step fails (per step: a suggestions shard, the warmer)."""
    return setting_int("CACHE_MAX_FAILED_KEYS", explicit, 0, minimum=0, field="max_failed_keys")


def resolve_ttl(name: str, explicit: int | None, default: int, jitter_name: str | None = None,
                jitter_explicit: int | None = None, jitter_default: int = 0) -> tuple[int, int]:
    """(ttl, jitter) in seconds that Redis accepts for every key: at least 1 s, and at most
    MAX_TTL_SECONDS with the jitter added; a bad value names its setting (or run-config field)."""
    ttl = setting_int(name, explicit, default, minimum=1, maximum=MAX_TTL_SECONDS, field="ttl_seconds")
    jitter = 0
    if jitter_name is not None:
        jitter = setting_int(jitter_name, jitter_explicit, jitter_default, minimum=0, maximum=MAX_TTL_SECONDS,
                             field="ttl_jitter_seconds")
    if ttl + jitter > MAX_TTL_SECONDS:
        raise SettingError(f"{name}={ttl} plus {jitter_name}={jitter} must be at most {MAX_TTL_SECONDS} (10 years)")
    return ttl, jitter


def rejected_writes_failure(result: BulkWriteResult, max_failed_keys: int, what: str,
                            metadata: dict[str, Any] | None = None) -> dg.Failure:
    kinds = ", ".join(
        f"{name} x{r.count} ({r.sample})" for name, r in sorted(result.rejections.items(), key=lambda x: -x[1].count)
    )
    description = (
        f"{what}: Redis rejected {result.failed} of {result.written + result.failed} keys "
        f"(CACHE_MAX_FAILED_KEYS={max_failed_keys}): {kinds}; the previous values stay in place"
    )
    return classified_failure(
        description,
        result.kind,
        result.error_class,
        {
            **(metadata or {}),
            "keys_written": result.written,
            "failed": result.failed,
            "tolerated": 0,
            "max_failed_keys": max_failed_keys,
            "rejections": dg.MetadataValue.json(
                {name: {"kind": r.kind, "count": r.count} for name, r in result.rejections.items()}
            ),
            "failed_keys_sample": dg.MetadataValue.json(result.failed_keys[:5]),
        },
    )


def settle_rejected_writes(result: BulkWriteResult, max_failed_keys: int, what: str,
                           metadata: dict[str, Any] | None = None) -> int:
    """The number of rejected keys tolerated (logged as a warning); more than `max_failed_keys`
    raise a Dagster failure, transient (the retry policy applies) or permanent by the cause of
    the rejections."""
    if result.failed > max_failed_keys:
        raise rejected_writes_failure(result, max_failed_keys, what, metadata)
    if result.failed:
        dg.get_dagster_logger().warning(
            f"{what}: {result.failed} keys not written (tolerated, the others were): {result.errors[:5]}"
        )
    return result.failed
