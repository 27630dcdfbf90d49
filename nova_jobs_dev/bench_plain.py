"""Plain formulations of the contract, written from CONTRACT.md alone, for `make bench`'s limits.

Each is the straightforward SQL a reader of the contract would write (no packing, no bound
arrays, no heaps), so a job's plan is measured against an independent baseline, never against
itself. `same_*` compare a plain output with what a job wrote to Redis; the bench refuses to
print figures for a job whose output differs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime

from nova_jobs.feeds.queries import FEED_KEY_PREFIX, FEED_SIZE, FEED_WINDOW_SECONDS
from nova_jobs.suggestions.queries import SUGGESTED_KEY_PREFIX, SuggestionCaps
from nova_jobs.trending.windows import TrendingWindow
from nova_jobs.warehouse.active_users import active_window
from nova_jobs.warehouse.engagement import EVENT_WEIGHTS

_KNOWN = "(" + ", ".join(f"'{t}'" for t in EVENT_WEIGHTS) + ")"
_WEIGHT = "multiIf(" + ", ".join(f"event_type = '{t}', {w}" for t, w in EVENT_WEIGHTS.items()) + ", 0.0)"
_WEIGHT_TENTHS = "multiIf(" + ", ".join(f"event_type = '{t}', {round(w * 10)}" for t, w in EVENT_WEIGHTS.items()) + ", 0)"

# Trending, decayed scoring: rows (post_id, score), best first.
TRENDING_SQL = f"""
SELECT pairs.post_id AS post_id,
       sum(pairs.weight * pow({{decay:Float64}}, ({{now:Int64}} - toInt64(toUnixTimestamp(pairs.latest))) / 3600.0)) AS score
FROM (
    SELECT post_id, user_id, event_type, any({_WEIGHT}) AS weight, max(event_time) AS latest
    FROM {{db:Identifier}}.post_events
    WHERE event_time > toDateTime({{start:Int64}}, 'UTC') AND event_time <= toDateTime({{now:Int64}}, 'UTC')
      AND event_type IN {_KNOWN}
    GROUP BY post_id, user_id, event_type
) AS pairs
LEFT JOIN {{db:Identifier}}.posts AS p ON p.post_id = pairs.post_id
WHERE p.author_id IS NULL OR pairs.user_id != p.author_id
GROUP BY pairs.post_id
HAVING score > 0
ORDER BY score DESC, post_id ASC
LIMIT {{top_k:UInt32}}
SETTINGS join_use_nulls = 1
"""


def trending_params(database: str, window: TrendingWindow, now_epoch: int) -> dict:
    """The parameters of `TRENDING_SQL` for `window` as of `now_epoch`."""
    return {"db": database, "now": now_epoch, "start": now_epoch - int(window.span.total_seconds()),
            "decay": window.decay, "top_k": window.top_k}


_ACTIVE = """
    SELECT user_id FROM {db:Identifier}.post_events
    WHERE event_time >= toDateTime({active_start:Int64}, 'UTC') AND event_time <= toDateTime({now:Int64}, 'UTC')
    GROUP BY user_id"""

# Warmed feeds: rows (key, followed posts, JSON value) for the target users with candidates.
# Engagement sums integer tenths, as the contract's weights are exact in tenths.
FEEDS_SQL = f"""
WITH
  targets AS ({_ACTIVE} ORDER BY count() DESC, user_id ASC LIMIT {{target_users:UInt64}}),
  candidates AS (
    SELECT f.follower_id AS u, p.post_id AS post_id, p.author_id AS author_id, p.created_at AS created_at
    FROM {{db:Identifier}}.follows AS f
    INNER JOIN {{db:Identifier}}.posts AS p ON p.author_id = f.followee_id
    WHERE f.follower_id IN targets
      AND p.created_at >= toDateTime({{feed_start:Int64}}, 'UTC') AND p.created_at <= toDateTime({{now:Int64}}, 'UTC')
      AND (f.follower_id, f.followee_id) NOT IN (SELECT blocker_id, blocked_id FROM {{db:Identifier}}.user_blocks)
      AND (f.followee_id, f.follower_id) NOT IN (SELECT blocker_id, blocked_id FROM {{db:Identifier}}.user_blocks)
  ),
  engagement AS (
    SELECT post_id, sum({_WEIGHT_TENTHS}) / 10.0 AS e
    FROM {{db:Identifier}}.post_events
    WHERE event_time <= toDateTime({{now:Int64}}, 'UTC')
    GROUP BY post_id
  ),
  ranked AS (
    SELECT c.u AS u, c.post_id AS post_id, c.author_id AS author_id,
           (1 + eng.e) * pow(0.95, ({{now:Int64}} - toInt64(toUnixTimestamp(c.created_at))) / 3600.0) AS score
    FROM candidates AS c LEFT JOIN engagement AS eng ON eng.post_id = c.post_id
    ORDER BY u, score DESC, post_id ASC
    LIMIT {{feed_size:UInt64}} BY u
  )
SELECT concat({{key_prefix:String}}, toString(u)) AS key, count() AS followed,
       concat('[', arrayStringConcat(arrayMap(x -> concat('{{"post_id":', toString(x.2), ',"author_id":', toString(x.3),
              ',"score":', toString(x.1), ',"reason":"followed"}}'),
              arraySort(x -> (-x.1, x.2), groupArray((score, post_id, author_id)))), ','), ']') AS value
FROM ranked
GROUP BY u
SETTINGS join_use_nulls = 0
"""


def feeds_params(database: str, now: datetime, target_users: int, active_days: int = 7) -> dict:
    """The parameters of `FEEDS_SQL` for the `target_users` most active users as of `now`."""
    window = active_window(now, active_days)
    return {"db": database, **window, "feed_start": window["now"] - FEED_WINDOW_SECONDS,
            "target_users": target_users, "feed_size": FEED_SIZE, "key_prefix": FEED_KEY_PREFIX}


# Suggested users: rows (key, JSON value) for every active user. Mutual picks from every path
# u -> followee -> candidate; the popular fill from the follower ranking, skipping the user,
# their followees, users in a block with them and their picks.
SUGGESTIONS_SQL = f"""
WITH
  active AS ({_ACTIVE}),
  mine AS (SELECT follower_id AS u, followee_id AS v FROM {{db:Identifier}}.follows WHERE follower_id IN active),
  blocked AS (
    SELECT blocker_id AS u, blocked_id AS v FROM {{db:Identifier}}.user_blocks
    UNION ALL SELECT blocked_id AS u, blocker_id AS v FROM {{db:Identifier}}.user_blocks
  ),
  mutual AS (
    SELECT u, c, score FROM (
      SELECT m.u AS u, f.followee_id AS c, count() AS score
      FROM mine AS m INNER JOIN {{db:Identifier}}.follows AS f ON f.follower_id = m.v
      WHERE f.followee_id != m.u
      GROUP BY u, c
    )
    WHERE (u, c) NOT IN (SELECT u, v FROM mine) AND (u, c) NOT IN (SELECT u, v FROM blocked)
    ORDER BY u, score DESC, c ASC
    LIMIT {{per_user:UInt64}} BY u
  ),
  picks AS (SELECT u, arraySort(x -> (-x.2, x.1), groupArray((c, score))) AS picks FROM mutual GROUP BY u),
  skips AS (SELECT u, groupArray(v) AS ids FROM (SELECT u, v FROM mine UNION ALL SELECT u, v FROM blocked) GROUP BY u),
  popular AS (
    -- Enough of the follower ranking for anyone: a user skips at most length(skip) of it.
    SELECT arraySlice(arrayMap(x -> x.2, arraySort(groupArray((-toInt64(followers), followee_id)))), 1,
                      (SELECT max(length(ids)) FROM skips) + 2 * {{per_user:UInt64}} + 1) AS ids
    FROM (SELECT followee_id, count() AS followers FROM {{db:Identifier}}.follows GROUP BY followee_id)
  ),
  lists AS (
    SELECT a.user_id AS user_id, p.picks AS picks,
           arrayConcat([a.user_id], s.ids, arrayMap(y -> y.1, p.picks)) AS skip,
           arraySlice(arrayFilter(x -> NOT has(skip, x),
                                  arraySlice((SELECT ids FROM popular), 1, {{per_user:UInt64}} + length(skip))),
                      1, {{per_user:UInt64}} - length(p.picks)) AS fill
    FROM active AS a
    LEFT JOIN picks AS p ON p.u = a.user_id
    LEFT JOIN skips AS s ON s.u = a.user_id
  )
SELECT concat({{key_prefix:String}}, toString(user_id)) AS key,
       concat('[', arrayStringConcat(arrayConcat(
         arrayMap(x -> concat('{{"user_id":', toString(x.1), ',"score":', toString(x.2), ',"reason":"mutual"}}'), picks),
         arrayMap(x -> concat('{{"user_id":', toString(x), ',"score":0,"reason":"popular"}}'), fill)), ','), ']') AS value
FROM lists
SETTINGS join_use_nulls = 0
"""


def suggestions_params(database: str, now: datetime, active_days: int = 7) -> dict:
    """The parameters of `SUGGESTIONS_SQL` for every user active as of `now`, default caps."""
    return {"db": database, **active_window(now, active_days), **SuggestionCaps().params(),
            "key_prefix": SUGGESTED_KEY_PREFIX}


def same_items(plain: list[dict], written: list[dict]) -> bool:
    """The same entries in the same order; scores equal but for the last bits of a float sum
    (ClickHouse adds in whatever order its threads finish)."""
    if len(plain) != len(written):
        return False
    for a, b in zip(plain, written):
        if a.keys() != b.keys():
            return False
        for field, value in a.items():
            if field == "score":
                if not math.isclose(float(value), float(b[field]), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif value != b[field]:
                return False
    return True


def differing_keys(plain: Iterable[tuple[str, str]], written: dict[str, str | bytes | None]) -> list[str]:
    """Keys whose written value is not the plain one (missing counts as differing)."""
    return [
        key for key, value in plain
        if written.get(key) is None or not same_items(json.loads(value), json.loads(written[key]))
    ]


# Suggestion keys of users the fan-out caps can reach (more followees than `max_followees`, or
# a followee following more than `max_per_followee`): the contract promises the exact lists
# only under the caps, so the comparison leaves these out (and the bench says how many).
CAPPED_SUGGESTION_KEYS_SQL = """
WITH wide AS (
  SELECT follower_id FROM {db:Identifier}.follows GROUP BY follower_id HAVING count() > {max_per_followee:UInt64}
)
SELECT concat({key_prefix:String}, toString(follower_id)) AS key
FROM {db:Identifier}.follows
GROUP BY follower_id
HAVING count() > {max_followees:UInt64} OR countIf(followee_id IN wide) > 0
"""
