"""Active users, as the contract defines them, in one place for every job.

A user is active when they have at least one `post_events` row in `[now - active_days, now]`;
they rank by their number of such events, descending, then `user_id` ascending.
"""

from __future__ import annotations

from datetime import datetime

from nova_jobs.lib.settings import setting_int
from nova_jobs.warehouse.sql import compose, placeholder

DAY_SECONDS = 86_400


def resolve_active_days(explicit: int | None = None) -> int:
    return setting_int("ACTIVE_DAYS", explicit, 7, minimum=1, maximum=3650, field="active_days")


def active_window(now: datetime, active_days: int) -> dict[str, int]:
    """Query parameters `active_start` and `now` (epoch seconds) for the SQL below."""
    now_epoch = int(now.timestamp())
    return {"now": now_epoch, "active_start": now_epoch - active_days * DAY_SECONDS}


# Every active user with their event count, up to the GROUP BY (an extra condition may follow).
_ACTIVE_EVENTS_SQL = """
SELECT user_id, count() AS events
FROM {db:Identifier}.post_events
WHERE event_time >= toDateTime({active_start:Int64}, 'UTC')
  AND event_time <= toDateTime({now:Int64}, 'UTC')"""


def active_users_sql(where: str = "") -> str:
    """All active users (unordered) with their event count, optionally restricted by an extra
    condition on `user_id` (a shard)."""
    extra = "\n  AND (" + where + ")" if where else ""
    return compose(_ACTIVE_EVENTS_SQL, extra, "\nGROUP BY user_id\n")


def top_active_users_sql(limit_param: str = "target_users") -> str:
    """The first `{limit_param}` active users in the contract's order."""
    return compose(
        active_users_sql(), "ORDER BY events DESC, user_id ASC\nLIMIT ", placeholder(limit_param, "UInt64"), "\n"
    )
