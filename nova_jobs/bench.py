"""`make bench`: every job at scale on this machine, next to its limits measured in the same run.

Generates the demo data set into a fresh embedded store under `.nova/bench`, starts its own
redis-server, then runs the five contract jobs' computations as their assets do (same
functions, same defaults) and prints, per job: query, build and Redis time (Redis time is what
the writer thread could not hide behind the query), total, users per second and peak RSS
(sampled during the job: Python and the embedded ClickHouse); and the limits on the same data:
the bare ClickHouse query (same SQL, rows streamed, nothing written) and a bare pipelined Redis
write of as many values of the same mean size (same writer, no query). `vs_limit` is total /
(bare query + bare Redis), `vs_query` is total / bare query.

`--caps-study` (on by default) then ranks a sample of active users with the default fan-out
caps, tighter caps, and none, and prints the recall of the exact (uncapped) top lists and the
time of each. Everything printed is also saved under `bench-results/`.

    python -m nova_jobs.bench                  # 1,000,000 users (~20M follows, 20M events)
    python -m nova_jobs.bench --scale small    # 50,000 users, a minute or two
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import dagster as dg
import redis as redis_lib

from nova_jobs.demo.generate import DemoSize, generate_demo
from nova_jobs.feeds.compute import warm_feeds
from nova_jobs.feeds.queries import FEEDS_SQL, feed_params
from nova_jobs.lib.cache import write_many
from nova_jobs.lib.timing import iso_z, utc_now
from nova_jobs.localstack import redis_process
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.suggestions.assets import DEFAULT_SHARDS
from nova_jobs.suggestions.compute import ShardStats, compute_shard, plan_shard
from nova_jobs.suggestions.queries import (
    SUGGESTED_KEY_PREFIX,
    SuggestionCaps,
    follows_source,
    lists_sql,
    part_json_rows_sql,
)
from nova_jobs.trending.assets import build_trending_asset
from nova_jobs.trending.queries import _params, trending_sql
from nova_jobs.trending.windows import WINDOWS
from nova_jobs.warehouse.active_users import active_users_sql, active_window

SCALES = {"small": 50_000, "default": 1_000_000}
DATABASE = "nova"
ACTIVE_DAYS = 7
USERS_PER_QUERY = 50_000  # the suggested_users default (SUGGESTION_USERS_PER_QUERY)
UNCAPPED = 10**9


class PeakRss:
    """Peak resident memory of this process while a block runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_mb = 0

    @staticmethod
    def current_mb() -> int:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return round(pages * resource.getpagesize() / 2**20)
        except OSError:  # not Linux: the lifetime peak is the best there is
            return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    @contextmanager
    def measure(self):
        done = threading.Event()
        self.peak_mb = self.current_mb()

        def sample() -> None:
            while not done.wait(0.02):
                self.peak_mb = max(self.peak_mb, self.current_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            done.set()
            sampler.join()
            self.peak_mb = max(self.peak_mb, self.current_mb())


def bare_stream(client, sql: str, params: dict, value_column: int | None = None) -> tuple[float, int, int]:
    """Seconds to run a query and stream every row, the rows, and the mean size of a column."""
    started = time.perf_counter()
    rows = size = 0
    with client.query_row_block_stream(sql, parameters=params) as stream:
        for block in stream:
            rows += len(block)
            if value_column is not None:
                size += sum(len(row[value_column]) for row in block)
    return time.perf_counter() - started, rows, size // max(rows, 1)


def bare_redis(client: redis_lib.Redis, count: int, value_size: int, prefix: str) -> float:
    """Seconds to SET (pipelined, with a TTL) `count` values of `value_size` bytes: the jobs'
    own writer with nothing else to wait for."""
    value = "x" * value_size
    started = time.perf_counter()
    write_many(client, ((f"{prefix}{i}", value) for i in range(count)), ttl_seconds=300)
    elapsed = time.perf_counter() - started
    for begin in range(0, count, 10_000):
        client.delete(*(f"{prefix}{i}" for i in range(begin, min(begin + 10_000, count))))
    return elapsed


def row(job, users, query, build, write, total, bare_query, bare_write, rss) -> dict:
    limit = bare_query + bare_write
    return {
        "job": job, "users": users, "query_s": query, "build_s": build, "redis_s": write, "total_s": total,
        "users_per_s": users / total if total else 0.0, "bare_query_s": bare_query, "bare_redis_s": bare_write,
        "vs_limit": total / limit if limit else 0.0, "vs_query": total / bare_query if bare_query else 0.0,
        "peak_rss_mb": rss,
    }


def format_table(rows: list[dict], title: str) -> str:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in columns}
    lines = [title, " | ".join(c.rjust(widths[c]) for c in columns)]
    lines += [" | ".join(_cell(r[c]).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def bench_trending(client, cache, now: datetime, rss: PeakRss, resources: dict) -> list[dict]:
    """Each trending job as Dagster runs it (the asset materialized in process: ranking, the
    window's event counts, one MULTI/EXEC), next to its bare query. A discarded first bare
    query warms ClickHouse, so neither side pays the cold start; a discarded first
    materialization pays Dagster's one-time set-up (a real run also starts a process, ~3 s)."""
    results = []
    dg.materialize([build_trending_asset(WINDOWS["1h"])], resources=resources,
                   run_config={"ops": {"cache__trending_1h": {"config": {"as_of": iso_z(now)}}}})
    for window in WINDOWS.values():
        params = {**_params(DATABASE, window, now), "top_k": window.top_k}
        bare_stream(client, trending_sql("decayed"), params)
        with rss.measure():
            t0 = time.perf_counter()
            run = dg.materialize(
                [build_trending_asset(window)],
                resources=resources,
                run_config={"ops": {f"cache__{window.job_name}": {"config": {"as_of": iso_z(now), "scoring": "decayed"}}}},
            )
            total = time.perf_counter() - t0
        metadata = run.asset_materializations_for_node(f"cache__{window.job_name}")[0].metadata
        query = (metadata["query_ms"].value + metadata["stats_query_ms"].value) / 1000
        write = metadata["write_ms"].value / 1000
        bare_q, _, _ = bare_stream(client, trending_sql("decayed"), params)
        value = cache.get(window.redis_key)
        t4 = time.perf_counter()
        cache.set("bench:trending", value)
        bare_w = time.perf_counter() - t4
        results.append(row(window.job_name, 1, query, total - query - write, write, total, bare_q, bare_w, rss.peak_mb))
        print(results[-1], flush=True)
    return results


def bench_suggestions(client, cache, now: datetime, shards: int, measured: int, rss: PeakRss) -> dict:
    """`measured` of the job's `shards` shard steps, one after the other (as the in-process
    executor runs them), then the same queries bare."""
    caps = SuggestionCaps()
    total = ShardStats()
    started = time.perf_counter()
    with rss.measure():
        for shard in range(measured):
            stats = compute_shard(client, cache, DATABASE, now, ACTIVE_DAYS, caps, shard, shards, USERS_PER_QUERY)
            for field in ShardStats.__dataclass_fields__:
                setattr(total, field, getattr(total, field) + getattr(stats, field))
    elapsed = time.perf_counter() - started
    sql = part_json_rows_sql()
    bare_q, rows, size = 0.0, 0, 0
    for shard in range(measured):
        base = {"db": DATABASE, **active_window(now, ACTIVE_DAYS), **caps.params(), "shards": shards, "shard": shard,
                "key_prefix": SUGGESTED_KEY_PREFIX}
        planned = time.perf_counter()
        plan = plan_shard(client, base, USERS_PER_QUERY)
        bare_q += time.perf_counter() - planned
        for part in range(len(plan.parts)):
            seconds, part_rows, part_size = bare_stream(client, sql, {**base, **plan.part_params(part)}, value_column=1)
            bare_q, rows, size = bare_q + seconds, rows + part_rows, size + part_size * part_rows
    bare_w = bare_redis(cache, rows, size // max(rows, 1), "bench:suggested:")
    job = "suggested_users" + ("" if measured == shards else f" ({measured}/{shards} shards)")
    result = row(job, total.users, total.query_ms / 1000, 0.0, total.write_ms / 1000, elapsed,
                 bare_q, bare_w, rss.peak_mb)
    print(result, total, flush=True)
    return result


def bench_feeds(client, cache, now: datetime, feed_users: int, rss: PeakRss) -> dict:
    with rss.measure():
        warm = warm_feeds(client, cache, DATABASE, now, ACTIVE_DAYS, feed_users, 120, 10)
    params = feed_params(DATABASE, now, active_window(now, ACTIVE_DAYS)["active_start"], feed_users)
    bare_q, rows, size = bare_stream(client, FEEDS_SQL, params, value_column=2)
    bare_w = bare_redis(cache, rows, size, "bench:feed:")
    result = row(f"cache_warmer ({feed_users:,})", warm.target_users, warm.query_ms / 1000, warm.build_ms / 1000,
                 warm.write_ms / 1000, warm.elapsed_ms / 1000, bare_q, bare_w, rss.peak_mb)
    print(result, warm, flush=True)
    return result


def caps_study(client, now: datetime, sample_share: int, per_user: int) -> list[dict]:
    """Rank a stable sample of active users (1 in `sample_share`) without caps and with each
    cap setting; recall = share of the exact list's users (mutual picks and popular fill, in
    any order) that the capped list also holds."""
    users_sql = "SELECT user_id FROM (" + active_users_sql("cityHash64(user_id) % {sample:UInt64} = 0") + ")"
    sql = "SELECT user_id, arrayConcat(arrayMap(x -> x.1, picks), fill) FROM (" + lists_sql(users_sql, follows_source()) + ")"
    base = {"db": DATABASE, **active_window(now, ACTIVE_DAYS), "sample": sample_share}

    def lists(caps: SuggestionCaps) -> tuple[dict[int, list[int]], float]:
        started = time.perf_counter()
        result = client.query(sql, parameters={**base, **caps.params()}).result_rows
        return {int(u): list(ids) for u, ids in result}, time.perf_counter() - started

    exact_caps = SuggestionCaps(per_user=per_user, max_followees=UNCAPPED, max_per_followee=UNCAPPED)
    exact, _ = lists(exact_caps)  # also warms the caches, so every timing below is warm
    settings = [SuggestionCaps(per_user=per_user), replace(exact_caps, max_followees=200, max_per_followee=200),
                replace(exact_caps, max_followees=50, max_per_followee=50), exact_caps]
    timed = {caps: lists(caps) for caps in settings}
    exact_seconds = timed[exact_caps][1]
    results = []
    for caps in settings:
        capped, seconds = timed[caps]
        wanted = sum(len(ids) for ids in exact.values())
        found = sum(len(set(ids) & set(capped.get(u, []))) for u, ids in exact.items())
        same = sum(capped.get(u) == ids for u, ids in exact.items())
        results.append({
            "caps (followees/per followee)": "none" if caps == exact_caps else f"{caps.max_followees}/{caps.max_per_followee}",
            "users": len(exact), f"recall@{per_user}": found / wanted if wanted else 1.0,
            "identical_lists": same / len(exact) if exact else 1.0,
            "query_s": seconds, "vs_uncapped": seconds / exact_seconds if exact_seconds else 0.0,
        })
        print(results[-1], flush=True)
    return results


def bench(users: int, feed_users: int, shards: int, measured_shards: int, workdir: Path,
          caps_sample: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir.resolve() / "store"  # chdb wants an absolute path
    shutil.rmtree(store, ignore_errors=True)
    now: datetime = utc_now()
    rss = PeakRss()
    with redis_process(data_dir=workdir / "redis") as server:
        cache = redis_lib.Redis(port=server.port)
        with ClickHouseResource(url=f"chdb://{store}", database=DATABASE).get_client() as client:
            started = time.perf_counter()
            stats = generate_demo(client, DATABASE, size=DemoSize(users=users), seed=seed, now=now)
            print(f"data: {stats} in {time.perf_counter() - started:.1f} s, now={iso_z(now)}", flush=True)
            resources = {"clickhouse": ClickHouseResource(url=f"chdb://{store}", database=DATABASE),
                         "redis": RedisResource(url=f"redis://127.0.0.1:{server.port}/0")}
            results = bench_trending(client, cache, now, rss, resources)
            results.append(bench_suggestions(client, cache, now, shards, measured_shards, rss))
            results.append(bench_feeds(client, cache, now, feed_users, rss))
            study = caps_study(client, now, caps_sample, SuggestionCaps().per_user) if caps_sample else []
    return results, study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="default")
    parser.add_argument("--users", type=int, help="users in the data set (overrides --scale)")
    parser.add_argument("--feed-users", type=int, default=100_000, help="FEED_TARGET_USERS for the warm (100000)")
    parser.add_argument("--suggestion-shards", type=int, default=DEFAULT_SHARDS,
                        help=f"SUGGESTION_SHARDS: active users split into this many shards ({DEFAULT_SHARDS})")
    parser.add_argument("--measure-shards", type=int, help="measure only the first N shards (default: all)")
    parser.add_argument("--caps-sample", type=int, default=20,
                        help="caps study on 1 in N active users (20); 0 skips the study")
    parser.add_argument("--workdir", type=Path, default=Path(".nova/bench"))
    parser.add_argument("--results", type=Path, default=Path("bench-results"), help="where the output is saved")
    args = parser.parse_args(argv)
    users = args.users or SCALES[args.scale]
    measured = min(args.measure_shards or args.suggestion_shards, args.suggestion_shards)
    started = time.perf_counter()
    results, study = bench(users, args.feed_users, args.suggestion_shards, measured, args.workdir, args.caps_sample)
    text = format_table(results, (
        f"Nova Jobs bench: {users:,} users, {args.suggestion_shards} suggestion shards; times in seconds; "
        "redis_s = Redis time not hidden behind the query; vs_limit = total / (bare query + bare Redis)"
    ))
    if study:
        text += "\n\n" + format_table(study, (
            f"Fan-out caps: recall of the exact (uncapped) top {SuggestionCaps().per_user} on 1 in "
            f"{args.caps_sample} active users, and query time"
        ))
    text += f"\n\nbench wall time {time.perf_counter() - started:.0f} s; python {sys.version.split()[0]}"
    print("\n" + text)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (args.results / f"bench-{users}-{stamp}.txt").write_text(text + "\n")
    (args.results / f"bench-{users}-{stamp}.json").write_text(json.dumps({"jobs": results, "caps": study}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
