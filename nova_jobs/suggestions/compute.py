"""One shard of the suggested-users cache: a few set-based queries streamed into Redis."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime

import redis as redis_lib
from clickhouse_connect.driver.client import Client

from nova_jobs.lib.cache import write_many
from nova_jobs.lib.timing import Stopwatch
from nova_jobs.suggestions.queries import (
    SUGGESTED_KEY_PREFIX,
    SUGGESTED_TTL_SECONDS,
    SuggestionCaps,
    follows_source,
    json_rows_sql,
    shard_condition,
)
from nova_jobs.warehouse.active_users import active_users_sql, active_window

_COUNT_SQL = "SELECT count() FROM ({users})"


@dataclass
class ShardStats:
    users: int = 0
    written: int = 0
    failed: int = 0
    mutual: int = 0
    popular: int = 0
    short_lists: int = 0
    parts: int = 0
    query_ms: int = 0
    write_ms: int = 0
    elapsed_ms: int = 0

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def shard_users_sql() -> str:
    return "SELECT user_id FROM (" + active_users_sql(shard_condition()) + ")"


def compute_shard(
    client: Client,
    redis: redis_lib.Redis,
    database: str,
    now: datetime,
    active_days: int,
    caps: SuggestionCaps,
    shard: int,
    shards: int,
    users_per_query: int,
    errors: list[str] | None = None,
) -> ShardStats:
    """Suggest for every active user of `shard` and write their keys, `users_per_query` users
    per query so that ClickHouse's memory stays bounded; rows stream into Redis pipelines, so
    Python never holds more than a pipeline's worth of lists."""
    watch = Stopwatch()
    stats = ShardStats()
    base = {"db": database, **active_window(now, active_days), **caps.params(), "shards": shards, "shard": shard}

    with watch.lap("count"):
        stats.users = int(
            client.query(_COUNT_SQL.format(users=shard_users_sql()), parameters={**base, "parts": 1, "part": 0})
            .result_rows[0][0]
        )
    stats.parts = max(1, math.ceil(stats.users / users_per_query))
    sql = json_rows_sql(shard_users_sql(), follows_source())

    for part in range(stats.parts):
        params = {**base, "parts": stats.parts, "part": part, "key_prefix": SUGGESTED_KEY_PREFIX}
        with watch.lap("execute"):
            context = client.query_rows_stream(sql, parameters=params)
        with context as stream:

            def rows() -> Iterator[tuple[str, str]]:
                iterator = iter(stream)
                while True:
                    with watch.lap("fetch"):
                        row = next(iterator, None)
                    if row is None:
                        return
                    key, value, mutual, popular = row
                    stats.mutual += mutual
                    stats.popular += popular
                    if mutual + popular < caps.per_user:
                        stats.short_lists += 1
                    yield key, value

            with watch.lap("stream"):
                result = write_many(redis, rows(), ttl_seconds=SUGGESTED_TTL_SECONDS)
        stats.written += result.written
        stats.failed += result.failed
        if errors is not None:
            errors.extend(result.errors[: max(0, 20 - len(errors))])

    # Fetching a row includes ClickHouse computing it; the rest of the stream is Redis.
    stats.query_ms = watch.ms("count") + watch.ms("execute") + watch.ms("fetch")
    stats.write_ms = max(0, watch.ms("stream") - watch.ms("fetch"))
    stats.elapsed_ms = watch.elapsed_ms
    return stats
