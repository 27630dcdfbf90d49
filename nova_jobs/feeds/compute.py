"""Warm the feeds of the most active users: one ranking query streamed into Redis pipelines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from nova_jobs.feeds.queries import FEEDS_SQL, feed_params, parse_trending, trending_fallback_json
from nova_jobs.lib.cache import BulkWriteResult, write_many
from nova_jobs.lib.timing import Stopwatch
from nova_jobs.trending.queries import query_trending
from nova_jobs.trending.windows import WINDOWS, resolve_scoring, resolve_top_k
from nova_jobs.warehouse.active_users import active_window

if TYPE_CHECKING:
    import redis as redis_lib
    from clickhouse_connect.driver.client import Client

TRENDING_24H = WINDOWS["24h"]


@dataclass
class WarmStats:
    target_users: int = 0  # the active users found, at most the target
    warmed: int = 0  # feeds written with followed posts or the trending fallback
    followed: int = 0  # of the warmed, feeds of followed posts
    fallback_trending: int = 0  # of the warmed, the trending list
    skipped: int = 0  # nothing to show (no followed post, empty trending): `[]` cached
    failed: int = 0  # writes Redis rejected; more than CACHE_MAX_FAILED_KEYS fail the run
    tolerated: int = 0  # of the failed, those CACHE_MAX_FAILED_KEYS let pass
    trending_source: str = ""  # redis | computed
    query_ms: int = 0
    build_ms: int = 0
    write_ms: int = 0
    elapsed_ms: int = 0
    # The write counts and what Redis rejected (not step metadata: the asset decides on them).
    writes: BulkWriteResult = field(default_factory=BulkWriteResult, repr=False)

    def as_metadata(self) -> dict:
        return {name: value for name, value in asdict(self).items() if name != "writes"}


def load_trending(client: Client, redis: redis_lib.Redis, database: str, now: datetime) -> tuple[list[dict], str]:
    """The current 24h trending list from its cache, or computed when the cache is empty."""
    cached = parse_trending(redis.get(TRENDING_24H.redis_key))
    if cached is not None:
        return cached, "redis"
    rows = query_trending(client, database, TRENDING_24H, resolve_scoring(), now, resolve_top_k(TRENDING_24H))
    return [{"post_id": post_id, "score": score} for post_id, score in rows], "computed"


def warm_feeds(
    client: Client,
    redis: redis_lib.Redis,
    database: str,
    now: datetime,
    active_days: int,
    target_users: int,
    ttl_seconds: int,
    jitter_seconds: int,
    observe: Callable[[str, str], None] | None = None,
) -> WarmStats:
    """Warm the feeds; the stats carry the write counts and Redis's rejections. `observe`, when
    given, sees every (key, value) as it is written (the content checks sample them there)."""
    watch = Stopwatch()
    stats = WarmStats()
    with watch.lap("query"):
        trending, stats.trending_source = load_trending(client, redis, database, now)
    with watch.lap("build"):
        fallback = trending_fallback_json(client, database, trending)
    fallback_kind = "fallback_trending" if trending else "skipped"

    params = feed_params(database, now, active_window(now, active_days)["active_start"], target_users)
    attempted: Counter[str] = Counter()
    failed: Counter[str] = Counter()

    def kind(value: str) -> str:
        return fallback_kind if value is fallback else "followed"

    with watch.lap("execute"):
        context = client.query_row_block_stream(FEEDS_SQL, parameters=params)
    with context as stream:

        def rows() -> Iterator[tuple[str, str]]:
            for block in watch.timed(stream, "fetch"):
                for key, followed, value in block:
                    if not followed:
                        value = fallback
                    attempted[kind(value)] += 1
                    if observe is not None:
                        observe(key, value)
                    yield key, value

        with watch.lap("stream"):
            result = write_many(
                redis, rows(), ttl_seconds=ttl_seconds, jitter_seconds=jitter_seconds,
                on_failure=lambda key, value: failed.update([kind(value)]),
            )

    stats.target_users = sum(attempted.values())
    stats.followed = attempted["followed"] - failed["followed"]
    stats.fallback_trending = attempted["fallback_trending"] - failed["fallback_trending"]
    stats.warmed = stats.followed + stats.fallback_trending
    stats.skipped = attempted["skipped"] - failed["skipped"]
    stats.failed = result.failed
    stats.writes = result
    stats.query_ms = watch.ms("query") + watch.ms("execute") + watch.ms("fetch")
    stats.build_ms = watch.ms("build")
    stats.write_ms = max(0, watch.ms("stream") - watch.ms("fetch"))
    stats.elapsed_ms = watch.elapsed_ms
    return stats
