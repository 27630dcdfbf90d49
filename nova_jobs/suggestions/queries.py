"""Friends-of-friends suggestions for a whole set of users in one ClickHouse query.

The query ranks every user of a part of a shard at once (a top-k heap per user), applies the
exclusions, fills short lists from the most-followed users, and can build the cached JSON
itself, so Python only streams (key, value) rows into Redis pipelines.

Fan-out caps keep the work per user bounded on a graph with celebrities: a user's most recent
`max_followees` follows are the intermediaries considered, and each intermediary contributes
its most recent `max_per_followee` followees. Exclusions always use every follow and block, and
the popular fill draws from the `popular_pool` most-followed users. Under the caps the result
is exactly the contract's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nova_jobs.catalog import SUGGESTED_USERS
from nova_jobs.lib.settings import setting_int
from nova_jobs.warehouse.blocks import blocked_pairs_sql
from nova_jobs.warehouse.sql import compose, placeholder

SUGGESTED_KEY_PREFIX = SUGGESTED_USERS.key_prefix
SUGGESTED_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class SuggestionCaps:
    per_user: int = SUGGESTED_USERS.list_length
    max_followees: int = 1000
    max_per_followee: int = 1000
    popular_pool: int = 10_000

    def params(self) -> dict[str, int]:
        return asdict(self)


def resolve_caps(
    per_user: int | None = None,
    max_followees: int | None = None,
    max_per_followee: int | None = None,
    popular_pool: int | None = None,
) -> SuggestionCaps:
    defaults = SuggestionCaps()
    return SuggestionCaps(
        per_user=setting_int("SUGGESTIONS_PER_USER", per_user, defaults.per_user, minimum=1, maximum=1000,
                              field="per_user"),
        max_followees=setting_int(
            "SUGGESTION_MAX_FOLLOWEES", max_followees, defaults.max_followees, minimum=1, field="max_followees"
        ),
        max_per_followee=setting_int(
            "SUGGESTION_MAX_CANDIDATES_PER_FOLLOWEE", max_per_followee, defaults.max_per_followee, minimum=1,
            field="max_per_followee",
        ),
        popular_pool=setting_int("SUGGESTION_POPULAR_POOL", popular_pool, defaults.popular_pool, minimum=1,
                                  field="popular_pool"),
    )


def follows_source(cutoff_param: str | None = None) -> str:
    """The follow edges the suggestions see: all of them, or (for a holdout) those created
    before the epoch-seconds parameter `cutoff_param`."""
    if cutoff_param is None:
        return "{db:Identifier}.follows"
    return compose(
        "(SELECT follower_id, followee_id, created_at FROM {db:Identifier}.follows ",
        "WHERE created_at < toDateTime(", placeholder(cutoff_param, "Int64"), ", 'UTC'))",
    )


def pool_sql(follows: str) -> str:
    """One row, one column: the `popular_pool` (parameter) most-followed users of `follows`,
    best first, as one array."""
    return compose("""
SELECT groupArray(followee_id) FROM (
  SELECT followee_id, count() AS followers FROM """, follows, """ AS f
  GROUP BY followee_id
  ORDER BY followers DESC, followee_id ASC
  LIMIT {popular_pool:UInt64}
)
""")


# The job's form: the part's users and the popular pool are computed once per shard and bound
# as arrays, and the part's users are a contiguous id range so that the follows scans for
# them read only that range of the table (ordered by follower_id). ClickHouse inlines a CTE
# at each mention, so a `users` CTE over post_events would be recomputed several times per
# query, and the pool once per query.
USERS_PARAM_SQL = "SELECT arrayJoin({users:Array(UInt64)}) AS user_id"
POOL_PARAM_SQL = "{pool:Array(UInt64)}"
FOLLOWER_RANGE_SQL = "follower_id BETWEEN {first_user:UInt64} AND {last_user:UInt64}"

# Larger than any number of paths, so one exclusion outweighs every mutual follow.
_EXCLUDED_WEIGHT = "toInt64(-1000000000000)"


def core_sql(users_sql: str, follows: str, pool: str | None = None, mine_range: str | None = None) -> str:
    """One row per user (user_id, picks, fill): the ranked mutual picks as (user_id, score)
    tuples and the popular fill as user ids.

    `users_sql` yields a `user_id` column: the users to suggest for. `follows` is a table or
    subquery with the follows table's columns. `pool` is an array expression (the popular pool;
    by default computed inside the query from `follows`), `mine_range` an optional extra
    condition on `follower_id` that every user of `users_sql` meets."""
    pool = pool if pool is not None else "(" + pool_sql(follows).strip() + ")"
    mine_range = mine_range + "\n      AND " if mine_range else ""
    return compose("""
WITH
  """, pool, """ AS pool,
  users AS (""", users_sql, """),
  mine AS (
    SELECT follower_id AS u, followee_id AS v, created_at
    FROM """, follows, """ AS f
    WHERE """, mine_range, """follower_id IN (SELECT user_id FROM users)
  ),
  considered AS (
    SELECT u, v FROM mine
    ORDER BY u, created_at DESC, v
    LIMIT {max_followees:UInt64} BY u
  ),
  hop AS (
    SELECT follower_id AS v, followee_id AS c
    FROM """, follows, """ AS f
    WHERE follower_id IN (SELECT v FROM considered)
    ORDER BY v, created_at DESC, c
    LIMIT {max_per_followee:UInt64} BY v
  ),
  blocked AS (""", blocked_pairs_sql("SELECT user_id FROM users", "c"), """),
  excluded AS (
    SELECT u, groupArray(v) AS ids
    FROM (SELECT u, v FROM mine UNION ALL SELECT u, c AS v FROM blocked)
    GROUP BY u
  ),
  pairs AS (
    -- Every path u -> v -> c (c not u) counts 1. A follow or a block adds a large negative
    -- weight, so those exclusions ride the same aggregation (no set lookup per path).
    SELECT u, c, sum(w) AS score
    FROM (
      SELECT considered.u AS u, hop.c AS c, toInt64(1) AS w
      FROM considered INNER JOIN hop ON considered.v = hop.v
      WHERE hop.c != considered.u
      UNION ALL SELECT u, v AS c, """, _EXCLUDED_WEIGHT, """ AS w FROM mine
      UNION ALL SELECT u, c, """, _EXCLUDED_WEIGHT, """ AS w FROM blocked
    )
    GROUP BY u, c
    HAVING score > 0
  ),
  mutual AS (
    -- The best per_user by (score desc, c asc) with a bounded heap per user instead of a global
    -- sort; (2^32 - score, c) packed into one UInt128 compares far faster than a tuple.
    SELECT u, arrayMap(
        k -> (toUInt64(bitAnd(k, 18446744073709551615)), toUInt64(4294967296 - bitShiftRight(k, 64))),
        groupArraySorted({per_user:UInt64})(bitOr(bitShiftLeft(toUInt128(4294967296 - score), 64), toUInt128(c)))
      ) AS picks
    FROM pairs
    GROUP BY u
  ),
  lists AS (
    SELECT
      users.user_id AS user_id,
      m.picks AS picks,
      arrayConcat([users.user_id], e.ids, arrayMap(x -> x.1, m.picks)) AS skip,
      toInt64({per_user:UInt64}) - length(m.picks) AS need
    FROM users
    LEFT JOIN mutual AS m ON m.u = users.user_id
    LEFT JOIN excluded AS e ON e.u = users.user_id
  )
SELECT
  user_id,
  picks,
  -- Only the first `need + length(skip)` popular users can be needed: at most length(skip)
  -- of them are excluded.
  if(need > 0,
     arraySlice(arrayFilter(x -> NOT has(skip, x), arraySlice(pool, 1, need + length(skip))), 1, need),
     []) AS fill
FROM lists
""")


def json_rows_sql(users_sql: str, follows: str, pool: str | None = None, mine_range: str | None = None) -> str:
    """Rows (key, value, mutual_count, popular_count) ready for Redis; ClickHouse builds the
    cached value, exactly the contract's JSON (integers only)."""
    return compose("""
SELECT
  concat({key_prefix:String}, toString(user_id)) AS key,
  concat('[', arrayStringConcat(arrayConcat(
      arrayMap(x -> concat('{"user_id":', toString(x.1), ',"score":', toString(x.2), ',"reason":"mutual"}'), picks),
      arrayMap(x -> concat('{"user_id":', toString(x), ',"score":0,"reason":"popular"}'), fill)
  ), ','), ']') AS value,
  length(picks) AS mutual_count,
  length(fill) AS popular_count
FROM (""", core_sql(users_sql, follows, pool, mine_range), """)
""")


def shard_condition() -> str:
    """Users of shard `shard` out of `shards`, and of its part `part` out of `parts`: a stable
    hash, so a user always lands in the same shard and part."""
    return (
        "cityHash64(user_id) % {shards:UInt64} = {shard:UInt64}"
        " AND intDiv(cityHash64(user_id), {shards:UInt64}) % {parts:UInt64} = {part:UInt64}"
    )


def part_json_rows_sql() -> str:
    """The job's query: `json_rows_sql` for the users bound as `users` (ids in
    [`first_user`, `last_user`]) with the popular pool bound as `pool`."""
    return json_rows_sql(USERS_PARAM_SQL, follows_source(), POOL_PARAM_SQL, FOLLOWER_RANGE_SQL)


def lists_sql(users_sql: str, follows: str) -> str:
    """Rows (user_id, picks, fill) for inspection and evaluation."""
    return core_sql(users_sql, follows)
