"""Trending scores, computed entirely in ClickHouse (one query per window and run)."""

from __future__ import annotations

from datetime import datetime

from clickhouse_connect.driver.client import Client

from nova_jobs.trending.windows import TrendingWindow
from nova_jobs.warehouse.engagement import KNOWN_TYPES_SQL as _KNOWN_TYPES
from nova_jobs.warehouse.engagement import WEIGHT_SQL as _WEIGHT


# Each distinct (user, type) pair counts once, decayed by the age of its latest event; the
# post's author does not count when the post is known. join_use_nulls tells "no such post"
# (NULL author) apart from an author whose id happens to be 0.
DECAYED_SQL = f"""
SELECT pairs.post_id AS post_id,
       sum(pairs.weight * pow({{decay:Float64}}, ({{now:Int64}} - toInt64(toUnixTimestamp(pairs.latest))) / 3600.0)) AS score
FROM (
    SELECT post_id, user_id, event_type, any({_WEIGHT}) AS weight, max(event_time) AS latest
    FROM {{db:Identifier}}.post_events
    WHERE event_time > toDateTime({{start:Int64}}, 'UTC') AND event_time <= toDateTime({{now:Int64}}, 'UTC')
      AND event_type IN {_KNOWN_TYPES}
    GROUP BY post_id, user_id, event_type
) AS pairs
LEFT ANY JOIN {{db:Identifier}}.posts AS p ON p.post_id = pairs.post_id
WHERE p.author_id IS NULL OR pairs.user_id != p.author_id
GROUP BY pairs.post_id
HAVING score > 0
ORDER BY score DESC, post_id ASC
LIMIT {{top_k:UInt32}}
SETTINGS join_use_nulls = 1
"""

# The old worker's formula, kept for parity: raw counts, decayed by whole hours since the
# post's latest event.
SEED_SQL = f"""
SELECT post_id,
       (0.1 * countIf(event_type = 'view') + 2 * countIf(event_type = 'like')
        + 3 * countIf(event_type = 'comment') + 5 * countIf(event_type = 'share'))
       * pow({{decay:Float64}}, dateDiff('hour', max(event_time), toDateTime({{now:Int64}}, 'UTC'))) AS score
FROM {{db:Identifier}}.post_events
WHERE event_time > toDateTime({{start:Int64}}, 'UTC') AND event_time <= toDateTime({{now:Int64}}, 'UTC')
  AND event_type IN {_KNOWN_TYPES}
GROUP BY post_id
HAVING score > 0
ORDER BY score DESC, post_id ASC
LIMIT {{top_k:UInt32}}
"""

WINDOW_STATS_SQL = f"""
SELECT count() AS events, countIf(event_type NOT IN {_KNOWN_TYPES}) AS unknown_type_events
FROM {{db:Identifier}}.post_events
WHERE event_time > toDateTime({{start:Int64}}, 'UTC') AND event_time <= toDateTime({{now:Int64}}, 'UTC')
"""


def _params(database: str, window: TrendingWindow, now: datetime) -> dict:
    now_epoch = int(now.timestamp())
    return {
        "db": database,
        "now": now_epoch,
        "start": now_epoch - int(window.span.total_seconds()),
        "decay": window.decay,
    }


def trending_sql(scoring: str) -> str:
    return DECAYED_SQL if scoring == "decayed" else SEED_SQL


def query_trending(
    client: Client, database: str, window: TrendingWindow, scoring: str, now: datetime, top_k: int
) -> list[tuple[int, float]]:
    """Top `top_k` (post_id, score) for the window as of `now`, best first."""
    params = {**_params(database, window, now), "top_k": top_k}
    result = client.query(trending_sql(scoring), parameters=params)
    return [(int(post_id), float(score)) for post_id, score in result.result_rows]


def query_window_stats(client: Client, database: str, window: TrendingWindow, now: datetime) -> dict[str, int]:
    """How many events fell in the window, and how many of them had an unknown type."""
    params = _params(database, window, now)
    params.pop("decay")
    events, unknown = client.query(WINDOW_STATS_SQL, parameters=params).result_rows[0]
    return {"events": int(events), "unknown_type_events": int(unknown)}
