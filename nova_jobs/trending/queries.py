"""Trending scores, computed entirely in ClickHouse (one query per window and run)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from nova_jobs.trending.windows import TrendingWindow
from nova_jobs.warehouse.engagement import KNOWN_TYPES_SQL, TYPE_INDEX_SQL, WEIGHTED_COUNTS_SQL, WEIGHTS_BY_INDEX_SQL
from nova_jobs.warehouse.sql import compose

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


# Each distinct (user, type) pair counts once, decayed by the age of its latest event; the
# post's author does not count when the post is known: a (post, user) pair found in `posts` as
# (post_id, author_id) is the author's own. A set lookup rather than a join with `posts`: an
# unknown post needs no NULL author, a post listed twice counts once, and at 300,000 posts the
# 1-hour query is a fifth faster (no hash table of every post built per run).
#
# One scan of the window gives the ranking and the window's event counts: every event is
# grouped, a known type by its position (`t`, 1-4) and every unknown type as t = 0 (it scores
# nothing), each post carries the window's totals, and the query keeps the top K posts whatever
# their score. Posts of score 0 can only come after every post of a positive score, so dropping
# them afterwards (`query_trending_with_stats`) leaves the contract's list; and any event in the
# window yields at least one row, so the totals are never lost.
DECAYED_SQL = compose("""
SELECT post_id, score, sum(events) OVER () AS window_events, sum(unknown) OVER () AS window_unknown
FROM (
    SELECT pairs.post_id AS post_id,
           sumIf(pairs.weight * pow({decay:Float64}, ({now:Int64} - toInt64(toUnixTimestamp(pairs.latest))) / 3600.0),
                 pairs.t > 0 AND (pairs.post_id, pairs.user_id) NOT IN (SELECT post_id, author_id FROM {db:Identifier}.posts)) AS score,
           sum(pairs.n) AS events,
           sumIf(pairs.n, pairs.t = 0) AS unknown
    FROM (
        SELECT post_id, user_id, """, TYPE_INDEX_SQL, """ AS t, """, WEIGHTS_BY_INDEX_SQL, """[t] AS weight,
               max(event_time) AS latest, count() AS n
        FROM {db:Identifier}.post_events
        WHERE event_time > toDateTime({start:Int64}, 'UTC') AND event_time <= toDateTime({now:Int64}, 'UTC')
        GROUP BY post_id, user_id, t
    ) AS pairs
    GROUP BY pairs.post_id
)
ORDER BY score DESC, post_id ASC
LIMIT {top_k:UInt32}
""")

# The old worker's formula, kept for parity: raw counts weighed by the contract's weights,
# decayed by whole hours since the post's latest event (of a known type). Same single scan and
# totals as above.
SEED_SQL = compose("""
SELECT post_id, score, sum(events) OVER () AS window_events, sum(unknown) OVER () AS window_unknown
FROM (
    SELECT post_id,
           (""", WEIGHTED_COUNTS_SQL, """)
           * pow({decay:Float64}, dateDiff('hour', maxIf(event_time, event_type IN """, KNOWN_TYPES_SQL, """),
                                           toDateTime({now:Int64}, 'UTC'))) AS score,
           count() AS events,
           countIf(event_type NOT IN """, KNOWN_TYPES_SQL, """) AS unknown
    FROM {db:Identifier}.post_events
    WHERE event_time > toDateTime({start:Int64}, 'UTC') AND event_time <= toDateTime({now:Int64}, 'UTC')
    GROUP BY post_id
)
ORDER BY score DESC, post_id ASC
LIMIT {top_k:UInt32}
""")


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


def query_trending_with_stats(
    client: Client, database: str, window: TrendingWindow, scoring: str, now: datetime, top_k: int
) -> tuple[list[tuple[int, float]], dict[str, int]]:
    """Top `top_k` (post_id, score) for the window as of `now`, best first, and how many events
    fell in the window and how many of them had an unknown type."""
    params = {**_params(database, window, now), "top_k": top_k}
    rows = client.query(trending_sql(scoring), parameters=params).result_rows
    events, unknown = (int(rows[0][2]), int(rows[0][3])) if rows else (0, 0)
    ranked = [(int(post_id), float(score)) for post_id, score, _, _ in rows if score > 0]
    return ranked, {"events": events, "unknown_type_events": unknown}


def query_trending(
    client: Client, database: str, window: TrendingWindow, scoring: str, now: datetime, top_k: int
) -> list[tuple[int, float]]:
    """Top `top_k` (post_id, score) for the window as of `now`, best first."""
    return query_trending_with_stats(client, database, window, scoring, now, top_k)[0]
