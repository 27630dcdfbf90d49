"""How good are the suggestions? A temporal holdout, computed in ClickHouse.

Hide the follows created in `[cutoff, end]`, suggest from the follows made before `cutoff`
(the same query and caps the job uses) for the users who made a hidden follow (and an earlier one), and count how
many hidden follows appear in their lists (recall@k, over all hidden follows). The popular-only
baseline is the same list with no friends-of-friends: the most-followed people, same exclusions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from nova_jobs.suggestions.queries import SuggestionCaps, follows_source, lists_sql
from nova_jobs.warehouse.sql import compose

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_HIDDEN = """
SELECT follower_id AS user_id, followee_id AS c FROM {db:Identifier}.follows
WHERE created_at >= toDateTime({cutoff:Int64}, 'UTC') AND created_at <= toDateTime({end:Int64}, 'UTC')
"""

# The evaluated users: those with a hidden follow and at least one earlier follow (a user with
# none gets the popular list either way), at most `max_users` (a stable sample by hash).
_USERS = compose(
    "SELECT user_id FROM (", _HIDDEN, """)
WHERE user_id IN (
  SELECT follower_id FROM {db:Identifier}.follows WHERE created_at < toDateTime({cutoff:Int64}, 'UTC')
)
GROUP BY user_id
ORDER BY cityHash64(user_id), user_id LIMIT {max_users:UInt64}
""")


def recall_sql(lists: str) -> str:
    """Hidden follows, and how many of them the suggestion lists of `lists` (a query giving
    each evaluated user's `picks` and `fill`) contain."""
    return compose(
        """
WITH
  hidden AS (SELECT user_id, c FROM (""", _HIDDEN, ") WHERE user_id IN (", _USERS, """)),
  suggested AS (
    SELECT user_id, arrayJoin(arrayConcat(arrayMap(x -> x.1, picks), fill)) AS c
    FROM (""", lists, """)
  )
SELECT
  (SELECT count() FROM hidden) AS hidden_follows,
  (SELECT uniqExact(user_id) FROM hidden) AS users,
  (SELECT count() FROM hidden WHERE (user_id, c) IN (SELECT user_id, c FROM suggested)) AS hits
""")


@dataclass(frozen=True)
class Recall:
    users: int
    hidden_follows: int
    hits: int

    @property
    def recall(self) -> float:
        return self.hits / self.hidden_follows if self.hidden_follows else 0.0


def _recall(client: Client, database: str, cutoff: int, end: int, caps: SuggestionCaps, max_users: int) -> Recall:
    sql = recall_sql(lists_sql(_USERS, follows_source("cutoff")))
    params = {"db": database, "cutoff": cutoff, "end": end, "max_users": max_users, **caps.params()}
    hidden, users, hits = client.query(sql, parameters=params).result_rows[0]
    return Recall(users=int(users), hidden_follows=int(hidden), hits=int(hits))


def holdout_recall(
    client: Client, database: str, cutoff: int, end: int, caps: SuggestionCaps, max_users: int = 10_000
) -> tuple[Recall, Recall]:
    """(friends-of-friends with popular fill, popular only) recall@caps.per_user."""
    suggested = _recall(client, database, cutoff, end, caps, max_users)
    popular = _recall(client, database, cutoff, end, replace(caps, max_followees=0), max_users)
    return suggested, popular
