"""One shard of the suggested-users cache: a few set-based queries streamed into Redis."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from nova_jobs.lib.cache import BulkWriteResult, write_many
from nova_jobs.lib.timing import Stopwatch
from nova_jobs.suggestions.queries import (
    SUGGESTED_KEY_PREFIX,
    SUGGESTED_TTL_SECONDS,
    SuggestionCaps,
    follows_source,
    part_json_rows_sql,
    pool_sql,
    shard_condition,
)
from nova_jobs.warehouse.active_users import active_users_sql, active_window
from nova_jobs.warehouse.sql import compose

if TYPE_CHECKING:
    import redis as redis_lib
    from clickhouse_connect.driver.client import Client

WRITE_CHUNK = 2000


@dataclass
class ShardStats:
    users: int = 0
    written: int = 0
    failed: int = 0
    tolerated: int = 0  # of the failed, those CACHE_MAX_FAILED_KEYS let pass
    mutual: int = 0
    popular: int = 0
    short_lists: int = 0
    parts: int = 0
    query_ms: int = 0
    write_ms: int = 0
    elapsed_ms: int = 0
    # The write counts and what Redis rejected (not step metadata: the asset decides on them).
    writes: BulkWriteResult = field(default_factory=BulkWriteResult, repr=False)

    def as_metadata(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if name != "writes"}


def shard_users_sql() -> str:
    """The active users of part `part` of shard `shard` (parameters, as in `shard_condition`)."""
    return compose("SELECT user_id FROM (", active_users_sql(shard_condition()), ")")


@dataclass(frozen=True)
class ShardPlan:
    """What every query of a shard shares, computed once: the shard's active users split into
    parts of consecutive ids, and the popular pool."""

    parts: list[list[int]]
    pool: list[int]

    @property
    def users(self) -> int:
        return sum(len(part) for part in self.parts)

    def part_params(self, part: int) -> dict:
        ids = self.parts[part]
        return {"users": ids, "first_user": ids[0], "last_user": ids[-1], "pool": self.pool}


def plan_shard(client: Client, base: dict, users_per_query: int) -> ShardPlan:
    """`base` holds the query parameters (db, active window, shard, shards, popular_pool). The
    ids are at most a few hundred thousand integers per shard."""
    result = client.query(
        compose("SELECT user_id FROM (", shard_users_sql(), ") ORDER BY user_id"),
        parameters={**base, "parts": 1, "part": 0},
    )
    ids = [int(u) for u in result.result_columns[0]] if result.row_count else []
    pool = [int(u) for u in client.query(pool_sql(follows_source()), parameters=base).result_rows[0][0]]
    if not ids:
        return ShardPlan(parts=[], pool=pool)
    size = math.ceil(len(ids) / math.ceil(len(ids) / users_per_query))
    return ShardPlan(parts=[ids[i:i + size] for i in range(0, len(ids), size)], pool=pool)


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
) -> ShardStats:
    """Suggest for every active user of `shard` and write their keys, `users_per_query` users
    per query so that ClickHouse's memory stays bounded; rows stream into Redis pipelines, so
    Python holds at most about one query's lists while Redis catches up. The stats carry the
    write counts and Redis's rejections."""
    watch = Stopwatch()
    stats = ShardStats()
    base = {"db": database, **active_window(now, active_days), **caps.params(), "shards": shards, "shard": shard}

    with watch.lap("plan"):
        plan = plan_shard(client, base, users_per_query)
    stats.users = plan.users
    stats.parts = len(plan.parts)
    sql = part_json_rows_sql()

    def rows() -> Iterator[tuple[str, str]]:
        for part in range(stats.parts):
            params = {**base, **plan.part_params(part), "key_prefix": SUGGESTED_KEY_PREFIX}
            with watch.lap("execute"):
                context = client.query_row_block_stream(sql, parameters=params)
            with context as stream:
                for block in watch.timed(stream, "fetch"):
                    for key, value, mutual, popular in block:
                        stats.mutual += mutual
                        stats.popular += popular
                        if mutual + popular < caps.per_user:
                            stats.short_lists += 1
                        yield key, value

    # One writer for every part, with room for about a part: Redis writes part k while
    # ClickHouse computes part k + 1 (the engine releases the GIL), memory stays bounded by
    # `users_per_query`.
    with watch.lap("stream"):
        result = write_many(
            redis, rows(), ttl_seconds=SUGGESTED_TTL_SECONDS, chunk_size=WRITE_CHUNK,
            queue_batches=max(2, math.ceil(min(users_per_query, stats.users) / WRITE_CHUNK)),
        )
    stats.written = result.written
    stats.failed = result.failed
    stats.writes = result

    # Fetching a block includes ClickHouse computing it; the rest of the stream is time spent
    # waiting for Redis (what the writer thread could not hide behind the queries).
    query_ms = watch.ms("execute") + watch.ms("fetch")
    stats.query_ms = watch.ms("plan") + query_ms
    stats.write_ms = max(0, watch.ms("stream") - query_ms)
    stats.elapsed_ms = watch.elapsed_ms
    return stats
