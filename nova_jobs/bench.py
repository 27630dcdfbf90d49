"""`make bench`: every job at scale on this machine, next to its limits measured in the same run.

Generates the demo data set into a fresh embedded store under `.nova/bench`, starts its own
redis-server, then for each job prints query, build and Redis time, users per second and peak
RSS; and the limits on the same data: the bare ClickHouse query (rows streamed, nothing
written) and a bare pipelined Redis write of as many values of the same average size.

    python -m nova_jobs.bench                  # 1,000,000 users (~20M follows, 20M events)
    python -m nova_jobs.bench --scale small    # 50,000 users, a minute or two
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from datetime import datetime
from pathlib import Path

import redis as redis_lib

from nova_jobs.demo.generate import DemoSize, generate_demo
from nova_jobs.feeds.compute import warm_feeds
from nova_jobs.feeds.queries import FEEDS_SQL, feed_params
from nova_jobs.lib.cache import dumps, publish_with_meta
from nova_jobs.lib.timing import iso_z, utc_now
from nova_jobs.localstack import redis_process
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.suggestions.compute import compute_shard, shard_users_sql
from nova_jobs.suggestions.queries import SUGGESTED_KEY_PREFIX, SuggestionCaps, follows_source, json_rows_sql
from nova_jobs.trending.queries import query_trending
from nova_jobs.trending.windows import WINDOWS
from nova_jobs.warehouse.active_users import active_window

SCALES = {"small": 50_000, "default": 1_000_000}
DATABASE = "nova"


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bare_stream(client, sql: str, params: dict) -> tuple[float, int, int]:
    """Seconds to run a query and stream every row, rows, and the mean size of the last column."""
    started = time.perf_counter()
    rows = size = 0
    with client.query_rows_stream(sql, parameters=params) as stream:
        for row in stream:
            rows += 1
            size += len(row[-1]) if isinstance(row[-1], str) else 0
    return time.perf_counter() - started, rows, size // max(rows, 1)


def bare_redis(client: redis_lib.Redis, count: int, value_size: int, prefix: str) -> float:
    """Seconds for pipelined SETs with a TTL of `count` values of `value_size` bytes."""
    value = "x" * value_size
    started = time.perf_counter()
    for begin in range(0, count, 2000):
        with client.pipeline(transaction=False) as pipe:
            for i in range(begin, min(begin + 2000, count)):
                pipe.set(f"{prefix}{i}", value, ex=300)
            pipe.execute()
    return time.perf_counter() - started


def row(job, users, query, build, write, total, bare_query, bare_write, rss) -> dict:
    limit = bare_query + bare_write
    return {
        "job": job, "users": users, "query_s": query, "build_s": build, "redis_s": write, "total_s": total,
        "users_per_s": users / total if total else 0.0, "bare_query_s": bare_query, "bare_redis_s": bare_write,
        "limit_s": limit, "vs_limit": total / limit if limit else 0.0, "peak_rss_mb": rss,
    }


def print_table(rows: list[dict], title: str) -> None:
    columns = list(rows[0])
    print(f"\n{title}")
    print(" | ".join(f"{c:>12}" for c in columns))
    for r in rows:
        cells = []
        for c in columns:
            v = r[c]
            cells.append(f"{v:>12.2f}" if isinstance(v, float) else f"{v!s:>12}")
        print(" | ".join(cells))


def bench(users: int, feed_users: int, suggestion_shards: int, workdir: Path, seed: int = 7) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "store"
    shutil.rmtree(store, ignore_errors=True)
    now: datetime = utc_now()
    results: list[dict] = []
    with redis_process(data_dir=workdir / "redis") as server:
        cache = redis_lib.Redis(port=server.port)
        with ClickHouseResource(url=f"chdb://{store}", database=DATABASE).get_client() as client:
            started = time.perf_counter()
            stats = generate_demo(client, DATABASE, size=DemoSize(users=users), seed=seed, now=now)
            print(f"data: {stats} in {time.perf_counter() - started:.1f} s, now={iso_z(now)}", flush=True)

            for window in WINDOWS.values():
                t0 = time.perf_counter()
                top = query_trending(client, DATABASE, window, "decayed", now, window.top_k)
                t1 = time.perf_counter()
                publish_with_meta(cache, window.redis_key, dumps([{"post_id": p, "score": s} for p, s in top]),
                                  {"generated_at": iso_z(now), "run_id": "bench", "count": len(top), "scoring": "decayed"})
                t2 = time.perf_counter()
                bare_q, _, _ = bare_stream(client, *_trending_bare(window, now))
                t3 = time.perf_counter()
                cache.set("bench:trending", dumps(top))
                bare_w = time.perf_counter() - t3
                results.append(row(window.job_name, 1, t1 - t0, 0.0, t2 - t1, t2 - t0, bare_q, bare_w, peak_rss_mb()))
                print(results[-1], flush=True)

            warm = warm_feeds(client, cache, DATABASE, now, 7, feed_users, 120, 10)
            params = feed_params(DATABASE, now, active_window(now, 7)["active_start"], feed_users)
            bare_q, rows, size = bare_stream(client, FEEDS_SQL, params)
            bare_w = bare_redis(cache, rows, size, "bench:feed:")
            results.append(row(
                f"cache_warmer({feed_users})", warm.target_users, warm.query_ms / 1000, warm.build_ms / 1000,
                warm.write_ms / 1000, warm.elapsed_ms / 1000, bare_q, bare_w, peak_rss_mb(),
            ))
            print(results[-1], warm, flush=True)

            caps = SuggestionCaps()
            shard = compute_shard(client, cache, DATABASE, now, 7, caps, 0, suggestion_shards, 10**9)
            sql = json_rows_sql(shard_users_sql(), follows_source())
            params = {"db": DATABASE, **active_window(now, 7), **caps.params(), "shards": suggestion_shards,
                      "shard": 0, "parts": 1, "part": 0, "key_prefix": SUGGESTED_KEY_PREFIX}
            bare_q, rows, size = bare_stream(client, sql, params)
            bare_w = bare_redis(cache, rows, size, "bench:suggested:")
            results.append(row(
                f"suggested_users(shard 1/{suggestion_shards})", shard.users, shard.query_ms / 1000, 0.0,
                shard.write_ms / 1000, shard.elapsed_ms / 1000, bare_q, bare_w, peak_rss_mb(),
            ))
            print(results[-1], shard, flush=True)
    return results


def _trending_bare(window, now):
    from nova_jobs.trending.queries import _params, trending_sql

    return trending_sql("decayed"), {**_params(DATABASE, window, now), "top_k": window.top_k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="default")
    parser.add_argument("--users", type=int, help="users in the data set (overrides --scale)")
    parser.add_argument("--feed-users", type=int, default=100_000, help="FEED_TARGET_USERS for the warm (100000)")
    parser.add_argument("--suggestion-shards", type=int,
                        help="users split into this many shards; one shard is measured (default: 1 small, 10 default)")
    parser.add_argument("--workdir", type=Path, default=Path(".nova/bench"))
    args = parser.parse_args(argv)
    users = args.users or SCALES[args.scale]
    shards = args.suggestion_shards or (1 if users <= 100_000 else 10)
    results = bench(users, args.feed_users, shards, args.workdir)
    print_table(results, f"Nova Jobs bench: {users:,} users; times in seconds; vs_limit = total / (bare query + bare Redis write)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
