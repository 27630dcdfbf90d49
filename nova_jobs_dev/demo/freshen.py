"""Keep a reused demo data set alive: move it in time so that its newest event is "now" again.

The demo is generated relative to its first load; a day later the 1h window would be empty and
every trending list `[]`. Shifting every timestamp by the same amount keeps the data's shape (the
bursts, the follow graph's ages, the 48 h of recent posts the feeds use) and only moves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

# table -> its timestamp column. trending_history is not demo data: it records what was trending.
SHIFTED = {"post_events": "event_time", "posts": "created_at", "follows": "created_at", "user_blocks": "created_at"}
# A restart within this long of the newest event leaves the data as it is.
STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Span:
    first: datetime
    last: datetime

    def hours(self) -> str:
        """The trending_history partitions whose windows hold events, as `first .. last` keys."""
        first = self.first.replace(minute=0, second=0)
        last = self.last.replace(minute=0, second=0)
        return f"{first:%Y-%m-%d-%H:%M} .. {last:%Y-%m-%d-%H:%M}"


def event_span(client: Client, database: str) -> Span | None:
    first, last, rows = client.query(
        "SELECT min(event_time), max(event_time), count() FROM {db:Identifier}.post_events",
        parameters={"db": database},
    ).result_rows[0]
    if not rows:
        return None
    return Span(first.replace(tzinfo=UTC), last.replace(tzinfo=UTC))


def shift_to_now(client: Client, database: str, now: datetime | None = None) -> int:
    """Move every demo timestamp forward so the newest event is `now`. Returns the seconds moved
    (0 when the data is fresh or empty). Each table is rebuilt beside the old one and swapped in,
    as `event_time` is part of `post_events`' sort key and cannot be updated in place."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    span = event_span(client, database)
    if span is None or now - span.last < STALE_AFTER:
        return 0
    seconds = int((now - span.last).total_seconds())
    db = "`" + database.replace("\\", "\\\\").replace("`", "\\`") + "`"
    for table, column in SHIFTED.items():
        # DDL takes no identifier parameters; the names are ours and the database is quoted.
        client.command(f"DROP TABLE IF EXISTS {db}.{table}__shifted")
        client.command(f"CREATE TABLE {db}.{table}__shifted AS {db}.{table}")
        client.command(
            f"INSERT INTO {db}.{table}__shifted SELECT * REPLACE "
            f"({column} + toIntervalSecond({{seconds:UInt64}}) AS {column}) FROM {db}.{table}",
            parameters={"seconds": seconds},
        )
        client.command(f"EXCHANGE TABLES {db}.{table} AND {db}.{table}__shifted")
        client.command(f"DROP TABLE {db}.{table}__shifted")
    return seconds
