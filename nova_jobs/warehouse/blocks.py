"""Blocks, which exclude a pair of users in either direction, as SQL in one place."""

from nova_jobs.warehouse.sql import compose


def blocked_pairs_sql(users: str, other: str) -> str:
    """Rows (u, `other`): u is one of `users` (a subquery of user ids) and `other` (a column
    alias) a user in a block with u, whichever of them blocked. One filter on the union:
    ClickHouse inlines a CTE, so each mention of `users` would compute it again."""
    return compose("""
    SELECT u, """, other, """ FROM (
      SELECT blocker_id AS u, blocked_id AS """, other, """ FROM {db:Identifier}.user_blocks
      UNION ALL
      SELECT blocked_id AS u, blocker_id AS """, other, """ FROM {db:Identifier}.user_blocks
    )
    WHERE u IN (""", users, """)
  """)
