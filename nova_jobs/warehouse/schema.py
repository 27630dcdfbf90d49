"""The source tables of the contract, created idempotently for local use and tests.

In production the analytics team owns these tables and Nova Jobs only reads them; the only
table Nova Jobs owns is `trending_history`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SOURCE_TABLES = {
    "post_events": """
        CREATE TABLE IF NOT EXISTS {db:Identifier}.post_events (
            event_time DateTime('UTC'),
            post_id UInt64,
            user_id UInt64,
            event_type LowCardinality(String)
        ) ENGINE = MergeTree ORDER BY (event_time, post_id)
    """,
    "posts": """
        CREATE TABLE IF NOT EXISTS {db:Identifier}.posts (
            post_id UInt64,
            author_id UInt64,
            created_at DateTime('UTC')
        ) ENGINE = MergeTree ORDER BY post_id
    """,
    "follows": """
        CREATE TABLE IF NOT EXISTS {db:Identifier}.follows (
            follower_id UInt64,
            followee_id UInt64,
            created_at DateTime('UTC')
        ) ENGINE = MergeTree ORDER BY (follower_id, followee_id)
    """,
    "user_blocks": """
        CREATE TABLE IF NOT EXISTS {db:Identifier}.user_blocks (
            blocker_id UInt64,
            blocked_id UInt64,
            created_at DateTime('UTC')
        ) ENGINE = MergeTree ORDER BY (blocker_id, blocked_id)
    """,
}

# Owned by Nova Jobs. Each (window, as_of) snapshot is written whole with a fresh `version`;
# readers take the newest version, so a re-run replaces a partition without a moment where it
# is missing or doubled. Older versions are deleted after the new one lands.
HISTORY_TABLE = """
    CREATE TABLE IF NOT EXISTS {db:Identifier}.trending_history (
        window LowCardinality(String),
        as_of DateTime('UTC'),
        version UInt64,
        rank UInt16,
        post_id UInt64,
        score Float64,
        scoring LowCardinality(String),
        run_id String
    ) ENGINE = MergeTree
    PARTITION BY toYYYYMM(as_of)
    ORDER BY (window, as_of, version, rank)
"""


def create_database(client: Client, database: str) -> None:
    client.command("CREATE DATABASE IF NOT EXISTS {db:Identifier}", parameters={"db": database})


def create_source_tables(client: Client, database: str) -> None:
    create_database(client, database)
    for ddl in SOURCE_TABLES.values():
        client.command(ddl, parameters={"db": database})


def create_history_table(client: Client, database: str) -> None:
    create_database(client, database)
    client.command(HISTORY_TABLE, parameters={"db": database})
