"""Home-feed ranking for the most active users, computed by ClickHouse in one query.

For each target user: posts by their followees created in the last 48 hours, authors in a
block with them excluded, scored `(1 + e) * 0.95 ^ age_hours` (e: the post's weighted
engagement, raw counts of all its events up to now), best 50 first. ClickHouse also builds each
cached JSON value, so Python only streams (key, value) rows into Redis pipelines.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from nova_jobs.catalog import CACHE_WARMER
from nova_jobs.lib.cache import dumps
from nova_jobs.warehouse.blocks import blocked_pairs_sql
from nova_jobs.warehouse.engagement import WEIGHT_TENTHS_SQL
from nova_jobs.warehouse.active_users import top_active_users_sql
from nova_jobs.warehouse.sql import compose

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FEED_KEY_PREFIX = CACHE_WARMER.key_prefix
FEED_WINDOW_SECONDS = 48 * 3600
FEED_DECAY = 0.95
FEED_SIZE = CACHE_WARMER.list_length

# Rows (key, followed_count, value); value is '' for a user with no candidates (the caller
# substitutes the trending fallback). 18446744073709551615 is 2^64 - 1, the mask of one packed
# 64-bit field.
FEEDS_SQL = compose("""
WITH
  -- A scalar subquery runs once per query; a CTE is inlined at each of its (four) mentions, and
  -- each would rank the week's events again: that was half the query's time.
  (SELECT groupArray(user_id) FROM (""", top_active_users_sql(), """)) AS target_ids,
  targets AS (SELECT arrayJoin(target_ids) AS user_id),
  edges AS (
    SELECT follower_id AS u, followee_id AS a FROM {db:Identifier}.follows
    WHERE follower_id IN (SELECT user_id FROM targets)
  ),
  blocked AS (""", blocked_pairs_sql("SELECT user_id FROM targets", "a"), """),
  recent AS (
    SELECT post_id, author_id, created_at FROM {db:Identifier}.posts
    WHERE created_at >= toDateTime({feed_start:Int64}, 'UTC')
      AND created_at <= toDateTime({now:Int64}, 'UTC')
      AND author_id IN (SELECT a FROM edges)
  ),
  engagement AS (
    SELECT post_id, sum(""", WEIGHT_TENTHS_SQL, """) / 10.0 AS e FROM {db:Identifier}.post_events
    WHERE event_time <= toDateTime({now:Int64}, 'UTC')
      AND post_id IN (SELECT post_id FROM recent)
    GROUP BY post_id
  ),
  scored AS (
    -- Only an author's best `feed_size` posts can reach anyone's feed: cut the rest before
    -- the join with the followers.
    SELECT r.post_id AS post_id, r.author_id AS author_id,
           (1 + eng.e) * pow({decay:Float64}, ({now:Int64} - toInt64(toUnixTimestamp(r.created_at))) / 3600.0) AS score
    FROM recent AS r LEFT JOIN engagement AS eng ON eng.post_id = r.post_id
    ORDER BY author_id, score DESC, post_id ASC
    LIMIT {feed_size:UInt64} BY author_id
  ),
  lists AS (
    -- A bounded heap per user (no global sort) of the feed_size smallest (-score, post_id),
    -- packed into one UInt256 (2^64 - 1 - score bits, post_id, author_id): a positive double's
    -- bits order like its value, and a number compares far faster than a tuple.
    SELECT edges.u AS u,
           arrayMap(k -> (
               reinterpretAsFloat64(toUInt64(18446744073709551615 - bitShiftRight(k, 128))),
               toUInt64(bitAnd(bitShiftRight(k, 64), 18446744073709551615)),
               toUInt64(bitAnd(k, 18446744073709551615))
             ),
             groupArraySorted({feed_size:UInt64})(bitOr(bitOr(
               bitShiftLeft(toUInt256(18446744073709551615 - reinterpretAsUInt64(s.score)), 128),
               bitShiftLeft(toUInt256(s.post_id), 64)), toUInt256(s.author_id)))
           ) AS items
    FROM edges INNER JOIN scored AS s ON s.author_id = edges.a
    WHERE (edges.u, edges.a) NOT IN (SELECT u, a FROM blocked)
    GROUP BY u
  )
SELECT
  concat({key_prefix:String}, toString(t.user_id)) AS key,
  length(l.items) AS followed,
  if(followed = 0, '', concat('[', arrayStringConcat(arrayMap(
      x -> concat('{"post_id":', toString(x.2), ',"author_id":', toString(x.3),
                  ',"score":', toString(x.1), ',"reason":"followed"}'),
      l.items), ','), ']')) AS value
FROM targets AS t LEFT JOIN lists AS l ON l.u = t.user_id
SETTINGS join_use_nulls = 0
""")


def feed_params(database: str, now: datetime, active_start: int, target_users: int) -> dict:
    now_epoch = int(now.timestamp())
    return {
        "db": database,
        "now": now_epoch,
        "active_start": active_start,
        "feed_start": now_epoch - FEED_WINDOW_SECONDS,
        "decay": FEED_DECAY,
        "target_users": target_users,
        "feed_size": FEED_SIZE,
        "key_prefix": FEED_KEY_PREFIX,
    }


def trending_fallback_json(client: Client, database: str, trending: list[dict]) -> str:
    """The feed for a user with no candidates: the 24h trending list with each post's author
    (0 when the post is not in `posts`) and reason `trending`."""
    ids = [int(item["post_id"]) for item in trending]
    authors: dict[int, int] = {}
    if ids:
        result = client.query(
            "SELECT post_id, any(author_id) FROM {db:Identifier}.posts WHERE post_id IN {ids:Array(UInt64)} GROUP BY post_id",
            parameters={"db": database, "ids": ids},
        )
        authors = {int(post_id): int(author_id) for post_id, author_id in result.result_rows}
    return dumps([
        {"post_id": post_id, "author_id": authors.get(post_id, 0), "score": float(item["score"]), "reason": "trending"}
        for post_id, item in zip(ids, trending)
    ])


def parse_trending(value: bytes | str | None) -> list[dict] | None:
    if value is None:
        return None
    items = json.loads(value)
    return items if isinstance(items, list) else None
