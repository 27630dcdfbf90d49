"""`make bench`: every job at scale on this machine, as a schedule runs it, next to an
independent limit measured in the same process, on two differently shaped data sets.

For each data shape (`demo`: the demo generator's; `heavy`: a heavy-tailed out-degree, some
users following hundreds, and a few very popular accounts) the bench generates the data into a
fresh embedded store under `.nova/bench`, starts its own redis-server and, per job, prints:

- `job_s`: the whole job as the schedule runs it: the code location's own job (every step it
  has, the run's own overhead, events written to a sqlite instance), executed in process, the
  median of `--repeat` warm runs;
- `step_s`: its asset's step(s) alone (from the run's step events), and `query_s` and
  `redis_s` as the asset reports them;
- `limit_s` = `plain_s` + `bare_redis_s` + `floor_s`: a plain formulation of the contract
  (`bench_plain`, written from the contract, checked to give the same values as the job on
  this data), a bare pipelined write of the same keys and values, and Dagster's floor (a
  one-asset job that does nothing, run the same way, each of its runs right before one of the
  job's); `vs_limit` = job_s / limit_s.

The caps study (`--caps-sample`, on by default) then ranks a sample of active users with the
default fan-out caps, tighter caps, and none. Everything printed is saved under `bench-results/`.

Sections (`--only`, comma-separated; all three by default):
- `import`: what every run process pays first, `import nova_jobs.definitions` beside
  `import dagster`, a median of fresh processes (`nova_jobs_dev/import_bench.py`);
- `jobs`: the above, in process;
- `run-start`: each cache job (of `--jobs`) run as a schedule runs it,
  next to Dagster's floor in the same instance: queued by the repo's run coordinator, dequeued by
  a real `dagster-daemon`, started as a fresh process by the default run launcher; queue wait,
  process start (to RUN_START), steps and total from the run records, median of
  `--run-start-runs` (`nova_jobs_dev/run_start_bench.py`), with a second limit beside the
  jobs section's: the floor's run plus the plain formulation run in a fresh process, as a run's
  step must run it (`nova_jobs_dev/plain_fresh.py`). On each shape's data (the jobs section's
  stores when it ran, else data sets of `--users` generated for it).

    python -m nova_jobs_dev.bench                          # 1,000,000 users per shape
    python -m nova_jobs_dev.bench --users 300000 --repeat 3
    python -m nova_jobs_dev.bench --scale small            # 50,000 users
    python -m nova_jobs_dev.bench --only import            # the code location's import time alone
    python -m nova_jobs_dev.bench --only run-start --scale small
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import dagster as dg
import redis as redis_lib

from nova_jobs.catalog import CACHE_WARMER, SUGGESTED_USERS, NovaJob
from nova_jobs.feeds.queries import FEED_KEY_PREFIX
from nova_jobs.lib.cache import dumps, publish_with_meta, write_many
from nova_jobs.lib.timing import iso_z, utc_now
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.suggestions.queries import SuggestionCaps, follows_source, lists_sql
from nova_jobs.trending.windows import WINDOWS
from nova_jobs.warehouse.active_users import active_users_sql, active_window
from nova_jobs_dev import import_bench, run_start_bench
from nova_jobs_dev.bench_plain import CAPPED_SUGGESTION_KEYS_SQL
from nova_jobs_dev.bench_plain import FEEDS_SQL as PLAIN_FEEDS_SQL
from nova_jobs_dev.bench_plain import SUGGESTIONS_SQL as PLAIN_SUGGESTIONS_SQL
from nova_jobs_dev.bench_plain import TRENDING_SQL as PLAIN_TRENDING_SQL
from nova_jobs_dev.bench_plain import differing_keys, feeds_params, suggestions_params, trending_params
from nova_jobs_dev.demo.generate import SHAPES, generate_demo
from nova_jobs_dev.localstack import redis_process

SCALES = {"small": 50_000, "default": 1_000_000}
SECTIONS = ("import", "jobs", "run-start")


def sections(value: str) -> list[str]:
    """`--only`: one section or several, comma-separated."""
    chosen = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown or value!r}; known: {', '.join(SECTIONS)}")
    return chosen


DATABASE = "nova"
ACTIVE_DAYS = 7
UNCAPPED = 10**9


def step_key(job: NovaJob) -> str:
    """The step (or, for a graph asset, the prefix of the steps) of a job's asset."""
    return "__".join(job.asset_key.path)


class OutputMismatch(AssertionError):
    """A job and the plain formulation of its contract disagree: no figure is worth printing."""


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


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def stream_rows(client, sql: str, params: dict) -> list[tuple]:
    rows: list[tuple] = []
    with client.query_row_block_stream(sql, parameters=params) as stream:
        for block in stream:
            rows.extend(block)
    return rows


def read_back(cache: redis_lib.Redis, keys: list[str]) -> dict[str, bytes | None]:
    values: dict[str, bytes | None] = {}
    for begin in range(0, len(keys), 1000):
        chunk = keys[begin : begin + 1000]
        values.update(zip(chunk, cache.mget(chunk)))
    return values


def step_seconds(instance: dg.DagsterInstance, run_id: str, prefix: str) -> float:
    """Seconds from start to success of the run's steps named `prefix...` (the asset's own
    steps, not its checks' or the run's)."""
    starts: dict[str, float] = {}
    total = 0.0
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not (event.step_key or "").startswith(prefix) or event.step_key.endswith("_contents"):
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key in starts:
            total += entry.timestamp - starts.pop(event.step_key)
    return total


@dg.asset(key=["bench", "nothing"])
def nothing() -> None:
    """Dagster's floor: a one-asset job whose step does nothing."""


class Runner:
    """Runs the code location's own jobs in process on a sqlite instance, as a run worker
    would (every step, every event written), `repeat` warm times after one discarded run."""

    def __init__(self, instance: dg.DagsterInstance, repeat: int) -> None:
        from nova_jobs.definitions import defs

        self.defs = defs
        self.instance = instance
        self.repeat = repeat
        self.floor_job = dg.Definitions(assets=[nothing], jobs=[dg.define_asset_job("nothing", [nothing])]).resolve_job_def("nothing")

    def run(self, job_name: str, op: str, config: dict) -> dict:
        """The median run (with its step time and metadata) and the floor's median, each floor
        run right before a job run, so that both see the same machine."""
        job = self.defs.resolve_job_def(job_name)
        run_config = {"ops": {op: {"config": config}}}
        job.execute_in_process(instance=self.instance, run_config=run_config)
        self.floor_job.execute_in_process(instance=self.instance)
        runs, floors = [], []
        for _ in range(self.repeat):
            floors.append(timed(lambda: self.floor_job.execute_in_process(instance=self.instance))[0])
            seconds, result = timed(lambda: job.execute_in_process(instance=self.instance, run_config=run_config))
            if not result.success:
                raise RuntimeError(f"{job_name} failed in the bench")
            metadata = {}
            for materialization in result.asset_materializations_for_node(op):
                metadata.update({k: v.value for k, v in materialization.metadata.items()})
            runs.append({"job_s": seconds, "step_s": step_seconds(self.instance, result.run_id, op), "metadata": metadata})
        runs.sort(key=lambda r: r["job_s"])
        return {**runs[len(runs) // 2], "floor_s": statistics.median(floors)}


def figures(shape: str, job: str, run: dict, query_ms: float, write_ms: float, plain: float, bare: float,
            keys: int, rss: int) -> dict:
    floor = run["floor_s"]
    limit = plain + bare + floor
    return {
        "shape": shape, "job": job, "keys": keys, "compared": keys, "job_s": run["job_s"], "step_s": run["step_s"],
        "query_s": query_ms / 1000, "redis_s": write_ms / 1000, "plain_s": plain, "bare_redis_s": bare,
        "floor_s": floor, "limit_s": limit, "vs_limit": run["job_s"] / limit if limit else 0.0, "peak_rss_mb": rss,
    }


def median_timed(repeat: int, fn) -> tuple[float, object]:
    fn()  # warm: neither side pays ClickHouse's cold start
    runs = [timed(fn) for _ in range(repeat)]
    return statistics.median(seconds for seconds, _ in runs), runs[-1][1]


def bench_trending(runner: Runner, client, cache, shape: str, now: datetime, rss: PeakRss,
                   jobs: tuple[str, ...] = run_start_bench.SCHEDULED_JOBS) -> list[dict]:
    results = []
    for window in (window for window in WINDOWS.values() if window.job_name in jobs):
        with rss.measure():
            run = runner.run(window.job_name, step_key(window.job), {"as_of": iso_z(now), "scoring": "decayed"})
        params = trending_params(DATABASE, window, int(now.timestamp()))
        plain, rows = median_timed(runner.repeat, lambda: client.query(PLAIN_TRENDING_SQL, parameters=params).result_rows)
        value = dumps([{"post_id": int(post_id), "score": float(score)} for post_id, score in rows])
        written = read_back(cache, [window.redis_key])
        if differing_keys([(window.redis_key, value)], written):
            raise OutputMismatch(f"{shape} {window.job_name}: the job's list is not the plain formulation's")
        meta = {"generated_at": iso_z(now), "run_id": "bench", "count": len(rows), "scoring": "decayed"}
        bare, _ = median_timed(runner.repeat, lambda: publish_with_meta(cache, window.redis_key, written[window.redis_key], meta))
        metadata = run["metadata"]
        results.append(figures(shape, window.job_name, run, metadata["query_ms"], metadata["write_ms"],
                               plain, bare, 2, rss.peak_mb))
        print(results[-1], flush=True)
    return results


def bench_bulk(runner: Runner, client, cache, shape: str, job: str, op: str, config: dict, plain_sql: str,
               params: dict, rss: PeakRss, partial: bool = False, capped_sql: str | None = None) -> dict:
    """A job of one key per user. `partial`: the plain formulation yields only some of the
    job's keys (feeds: users with followed posts); the bare write still writes every key.
    `capped_sql`: keys the contract leaves to the fan-out caps, left out of the comparison."""
    with rss.measure():
        run = runner.run(job, op, config)
    plain, rows = median_timed(runner.repeat, lambda: stream_rows(client, plain_sql, params))
    plain_values = [(row[0], row[-1]) for row in rows]
    written = read_back(cache, [key for key, _ in plain_values])
    capped = {row[0] for row in client.query(capped_sql, parameters=params).result_rows} if capped_sql else set()
    wrong = differing_keys([(key, value) for key, value in plain_values if key not in capped], written)
    if wrong:
        raise OutputMismatch(f"{shape} {job}: {len(wrong)} of {len(plain_values)} values differ from the plain formulation, e.g. {wrong[:3]}")
    if partial:
        prefix = plain_values[0][0].rsplit(":", 1)[0] + ":*" if plain_values else f"{FEED_KEY_PREFIX}*"
        written.update(read_back(cache, [k.decode() for k in cache.scan_iter(match=prefix, count=10_000)]))
    pairs = [(key, value.decode()) for key, value in written.items() if value is not None]
    bare, _ = median_timed(runner.repeat, lambda: write_many(cache, iter(pairs), ttl_seconds=300))
    metadata = run["metadata"]
    result = figures(shape, job, run, metadata.get("query_ms", 0), metadata.get("write_ms", 0), plain, bare,
                     len(pairs), rss.peak_mb)
    result["compared"] = len(plain_values) - len(capped & {key for key, _ in plain_values})
    print(result, flush=True)
    return result


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


def bench_shape(shape: str, users: int, feed_users: int, repeat: int, workdir: Path, caps_sample: int,
                seed: int = 7, jobs: tuple[str, ...] = run_start_bench.SCHEDULED_JOBS) -> tuple[list[dict], list[dict]]:
    store = (workdir / shape).resolve() / "store"  # chdb wants an absolute path
    shutil.rmtree(store, ignore_errors=True)
    now: datetime = utc_now().replace(microsecond=0)
    rss = PeakRss()
    with redis_process(data_dir=workdir / shape / "redis") as server, tempfile.TemporaryDirectory() as home:
        cache = redis_lib.Redis(port=server.port)
        os.environ.update({"CLICKHOUSE_URL": f"chdb://{store}", "CLICKHOUSE_DATABASE": DATABASE,
                           "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
                           "KAFKA_BROKERS": os.environ.get("KAFKA_BROKERS", "127.0.0.1:9")})
        with ClickHouseResource(url=f"chdb://{store}", database=DATABASE).get_client() as client:
            started = time.perf_counter()
            stats = generate_demo(client, DATABASE, size=SHAPES[shape](users), seed=seed, now=now)
            print(f"{shape} data: {stats} in {time.perf_counter() - started:.1f} s, now={iso_z(now)}", flush=True)
            runner = Runner(dg.DagsterInstance.local_temp(home), repeat)
            results = bench_trending(runner, client, cache, shape, now, rss, jobs)
            caps = SuggestionCaps()
            if SUGGESTED_USERS.name in jobs:
                results.append(bench_bulk(
                    runner, client, cache, shape, SUGGESTED_USERS.name, step_key(SUGGESTED_USERS), {"as_of": iso_z(now)},
                    PLAIN_SUGGESTIONS_SQL, suggestions_params(DATABASE, now, ACTIVE_DAYS),
                    rss, capped_sql=CAPPED_SUGGESTION_KEYS_SQL,
                ))
            if CACHE_WARMER.name in jobs:
                results.append(bench_bulk(
                    runner, client, cache, shape, CACHE_WARMER.name, step_key(CACHE_WARMER),
                    {"as_of": iso_z(now), "target_users": feed_users},
                    PLAIN_FEEDS_SQL, feeds_params(DATABASE, now, feed_users, ACTIVE_DAYS),
                    rss, partial=True,
                ))
                results[-1]["job"] = f"cache_warmer ({feed_users:,})"
            study = caps_study(client, now, caps_sample, caps.per_user) if caps_sample else []
    return results, study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs_dev.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="default")
    parser.add_argument("--users", type=int, help="users in each data set (overrides --scale)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"data shapes, comma-separated ({','.join(SHAPES)})")
    parser.add_argument("--feed-users", type=int, default=1000, help="FEED_TARGET_USERS for the warm (1000, the job's default)")
    parser.add_argument("--jobs", type=run_start_bench.job_list, default=run_start_bench.SCHEDULED_JOBS, metavar="JOB[,JOB]",
                        help="the jobs of both sections, comma-separated (default: all five); e.g. the light jobs alone "
                             "at a scale where suggested_users would take too long")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per measurement; the median is shown (3)")
    parser.add_argument("--caps-sample", type=int, default=20,
                        help="caps study on 1 in N active users of the first shape (20); 0 skips the study")
    parser.add_argument("--workdir", type=Path, default=Path(".nova/bench"))
    parser.add_argument("--results", type=Path, default=Path("bench-results"), help="where the output is saved")
    parser.add_argument("--only", type=sections, default=list(SECTIONS), metavar="SECTION[,SECTION]",
                        help=f"sections to run, comma-separated: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--import-samples", type=int, default=7, help="fresh processes per import (7)")
    parser.add_argument("--run-start-runs", type=int, default=3,
                        help="measured runs per job in the run-start section, after a warm-up (3)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text_parts: list[str] = []
    saved: dict = {}
    imports = None
    if "import" in args.only:
        # First, before the data sets load the machine: what every run process pays at start.
        imports = import_bench.measure(args.import_samples)
        print(import_bench.report(imports), flush=True)
        text_parts.append(import_bench.report(imports))
    saved["import"] = imports
    users = args.users or SCALES[args.scale]
    shapes = [shape.strip() for shape in args.shapes.split(",") if shape.strip()]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; known: {list(SHAPES)}")
    results: list[dict] = []
    study: list[dict] = []
    if "jobs" in args.only:
        for index, shape in enumerate(shapes):
            shape_results, shape_study = bench_shape(shape, users, args.feed_users, args.repeat, args.workdir,
                                                     args.caps_sample if index == 0 else 0, jobs=args.jobs)
            results += shape_results
            study += shape_study
        text_parts.append(jobs_text(results, study, users, args))
    saved.update({"jobs": results, "caps": study})
    if "run-start" in args.only:
        saved["run_start"] = []
        for shape in shapes:
            if "jobs" in args.only:
                store = (args.workdir / shape).resolve() / "store"
            else:
                store = (args.workdir / f"run-start-{shape}").resolve() / "store"
                run_start_bench.ensure_data(store, users, shape)
            run_start = run_start_bench.measure(store, args.run_start_runs, args.jobs, workdir=args.workdir)
            run_start.update({"shape": shape, "users": users})
            with_limits(run_start["rows"], [row for row in results if row["shape"] == shape], args.feed_users,
                        run_start["queue_all_s"]["median"])
            text_parts.append(f"[{shape} data, {users:,} users] " + run_start_bench.report(run_start))
            saved["run_start"].append(run_start)
    if args.only == ["import"]:
        return 0
    text = "\n\n".join(text_parts)
    text += f"\n\nbench wall time {time.perf_counter() - started:.0f} s; python {sys.version.split()[0]}"
    print("\n" + text)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (args.results / f"bench-{users}-{stamp}.txt").write_text(text + "\n")
    (args.results / f"bench-{users}-{stamp}.json").write_text(json.dumps(saved, indent=1))
    return 0


def with_limits(rows: list[dict], jobs: list[dict], feed_users: int, queue_s: float) -> None:
    """The run-start rows' limit, when the jobs section measured their plain formulations on the
    same data: the floor's run (from the dequeue) + plain query + bare Redis write. run_vs_limit =
    run / limit; vs_limit adds the pooled queue wait `queue_s` to both sides (the whole run).
    fresh_vs_limit = limit_fresh / limit: where the plain formulation itself lands, as a fresh
    run process must run it, against this warm limit."""
    plain = {row["job"]: row["plain_s"] + row["bare_redis_s"] for row in jobs}
    plain["cache_warmer"] = plain.pop(f"cache_warmer ({1000:,})", None) if feed_users == 1000 else None
    floor = rows[0]
    if not all(plain.get(row["job"]) is not None for row in rows[1:]):
        return
    for row in rows:
        row["limit_s"] = floor["run_s"] + (plain[row["job"]] if row is not floor else 0.0)
        row["run_vs_limit"] = row["run_s"] / row["limit_s"]
        row["vs_limit"] = (queue_s + row["run_s"]) / (queue_s + row["limit_s"])
        if "limit_fresh_s" in row:
            row["fresh_vs_limit"] = row["limit_fresh_s"] / row["limit_s"]


def jobs_text(results: list[dict], study: list[dict], users: int, args: argparse.Namespace) -> str:
    text = format_table(results, (
        f"Nova Jobs bench: {users:,} users per shape, median of {args.repeat} warm runs; seconds. job_s = the whole "
        "job as scheduled (in process); limit_s = plain formulation + bare Redis write + Dagster's floor"
    ))
    if study:
        text += "\n\n" + format_table(study, (
            f"Fan-out caps: recall of the exact (uncapped) top {SuggestionCaps().per_user} on 1 in "
            f"{args.caps_sample} active users, and query time"
        ))
    return text


if __name__ == "__main__":
    raise SystemExit(main())
