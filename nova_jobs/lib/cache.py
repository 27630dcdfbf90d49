"""Publishing to the Redis caches the Nova API reads.

Each key holds one JSON string written with a single SET, so a reader sees the old value or the
new one, never a partial list and never a missing key (nothing is deleted first). A list and its
`:meta` key are written in one MULTI/EXEC so they always come from the same run. Bulk writes go
in pipelines of `chunk_size` commands.
"""

from __future__ import annotations

import json
import random
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


def write_many(
    client: redis.Redis,
    items: Iterable[tuple[str, str]],
    ttl_seconds: int,
    jitter_seconds: int = 0,
    chunk_size: int = 2000,
    on_failure: Callable[[str, str], None] | None = None,
) -> BulkWriteResult:
    """SET each (key, json) with a TTL, pipelined; one key's failure does not fail the others.

    The jitter spreads expiries over a few seconds so that a whole population of keys written
    in one run does not expire in the same second. `on_failure(key, value)` is called for every
    key that could not be written, for callers that count failures by kind.
    """
    result = BulkWriteResult()
    rng = random.Random()
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        if not batch:
            return
        with client.pipeline(transaction=False) as pipe:
            for key, value in batch:
                ttl = ttl_seconds + (rng.randint(0, jitter_seconds) if jitter_seconds else 0)
                pipe.set(key, value, ex=ttl)
            replies = pipe.execute(raise_on_error=False)
        for (key, value), reply in zip(batch, replies):
            if isinstance(reply, Exception):
                result.failed += 1
                if on_failure is not None:
                    on_failure(key, value)
                if len(result.failed_keys) < 20:
                    result.failed_keys.append(key)
                    result.errors.append(f"{type(reply).__name__}: {reply}")
            else:
                result.written += 1
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= chunk_size:
            flush()
    flush()
    return result
