"""The plain formulation of a cache job, as a fresh run process would have to do it.

    python -m nova_jobs_dev.plain_fresh --job trending_1h --store /abs/chdb/path --redis-url redis://127.0.0.1:6379/0

A scheduled run is a fresh process: before its query it must import a ClickHouse and a Redis
client and open them (with the embedded store, start chdb on the data), and its first query
finds the store's caches cold. The jobs section's plain query is timed warm, on a client that
is already open, so next to a fresh run it leaves all of that out. This runs the same plain
work a job's step does, once, in a fresh interpreter that has already imported Dagster (as a
run process has, before its step): import the clients, open them, run the plain query
(`bench_plain`), build the values and write the same keys with the bench's bare writes
(`publish_with_meta`, `write_many`), close. It prints one JSON object: each part's seconds
and their sum (`plain_fresh_s`), and the keys written.

The run-start section runs it right after each measured run of the job (one process at a time
may open the embedded store), and adds it to the floor's run of the same round: the limit a
plain job could reach as a schedule runs it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import dagster  # noqa: F401 - a run process has imported Dagster before its step; not timed

from nova_jobs.catalog import CACHE_WARMER, SUGGESTED_USERS
from nova_jobs.lib.cache import dumps, publish_with_meta, write_many
from nova_jobs.lib.timing import iso_z
from nova_jobs.suggestions.queries import SUGGESTED_TTL_SECONDS
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_dev.bench_plain import (
    FEEDS_SQL,
    SUGGESTIONS_SQL,
    TRENDING_SQL,
    feeds_params,
    suggestions_params,
    trending_params,
)

DATABASE = "nova"
TRENDING_JOBS = {window.job_name: window for window in WINDOWS.values()}
JOBS = (*TRENDING_JOBS, CACHE_WARMER.name, SUGGESTED_USERS.name)
FEED_USERS = 1000  # the warmer's default target, as its scheduled run uses
FEED_TTL_SECONDS = 120  # the warmer's default TTL (FEED_TTL_SEC)


def plain_run(job: str, store: str, redis_url: str, now: datetime) -> dict:
    """The plain work once, timed in parts; the writes are the bench's bare writes."""
    laps: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now_s = time.perf_counter()
        laps[name] = now_s - last
        last = now_s

    import clickhouse_connect
    import redis

    lap("imports_s")
    client = clickhouse_connect.get_client(dsn=f"chdb://{store}")
    cache = redis.Redis.from_url(redis_url)
    cache.ping()
    lap("open_s")
    if job in TRENDING_JOBS:
        window = TRENDING_JOBS[job]
        rows = client.query(TRENDING_SQL, parameters=trending_params(DATABASE, window, int(now.timestamp()))).result_rows
        lap("query_s")
        value = dumps([{"post_id": int(post_id), "score": float(score)} for post_id, score in rows])
        publish_with_meta(cache, window.redis_key, value, {"generated_at": iso_z(now), "run_id": "plain", "count": len(rows)})
        keys = 2
    else:
        if job == CACHE_WARMER.name:
            sql, params, ttl = FEEDS_SQL, feeds_params(DATABASE, now, FEED_USERS), FEED_TTL_SECONDS
        else:
            sql, params, ttl = SUGGESTIONS_SQL, suggestions_params(DATABASE, now), SUGGESTED_TTL_SECONDS
        rows = client.query(sql, parameters=params).result_rows
        lap("query_s")
        write_many(cache, ((row[0], row[-1]) for row in rows), ttl_seconds=ttl)
        keys = len(rows)
    lap("write_s")
    client.close()
    cache.close()
    lap("close_s")
    return {**laps, "plain_fresh_s": time.perf_counter() - started, "keys": keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs_dev.plain_fresh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=JOBS, required=True)
    parser.add_argument("--store", required=True, help="the embedded store's absolute path")
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(plain_run(args.job, args.store, args.redis_url, datetime.now(UTC).replace(microsecond=0))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
