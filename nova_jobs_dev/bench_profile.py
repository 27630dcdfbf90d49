"""Where an every-minute job's run goes beyond its query and Redis write, measured three ways.

    python -m nova_jobs_dev.bench_profile --users 50000 --runs 7

1. **Event timeline** (no profiler): the code location's `trending_1h` and `cache_warmer`, and
   Dagster's floor (a one-asset job that does nothing), run in process on an instance with the
   repo's `dagster.yaml` (sqlite storage, its `python_logs` handler), `--runs` warm runs each,
   interleaved. Each stretch between two consecutive entries of the run's event log is put on
   the entry that ends it (an entry is stamped when it is made, so the stretch holds making it
   and storing the one before): everything before STEP_START (creating the run with its
   *_PLANNED events, the run's own event database, run start, resources), the asset's compute
   (to its first event: client, query, write, its log line), then each kind of event the step
   emits (result output: building the `MaterializeResult` and the content checks; the
   materialization; the check outputs and evaluations; step success), and the run's end.
2. **cProfile** of one cold run per job, each in a fresh process (what a run the daemon launches
   pays: the clients' lazy imports, the embedded store's start), and of one warm run: cumulative
   time of the functions that matter (event writes, per-run event database, console handlers,
   imports, client opening, query, write, checks). The profiler inflates Python-heavy code: read
   these as where, the timeline as how much.
3. **Stand-ins**: assets that do nothing but emit what Nova's assets emit, to price each piece
   of the step: a dependency on a warehouse table (lineage: Dagster reads the upstream's asset
   record in every step, for data provenance), a trending-sized metadata dict, one log line,
   four check results, one check result carrying the four verdicts (as now); and the floor on an
   instance without the
   `python_logs` handler. Median of `--runs` interleaved runs each: the differences are what
   emitting a piece costs or would save.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from nova_jobs.catalog import POST_EVENTS
from nova_jobs.warehouse.tables import warehouse_tables

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOBS = ("trending_1h", "cache_warmer")
FLOOR = "nothing"
CHECK_NAMES = ("json_valid", "ranked", "no_duplicates", "at_most_k")

# What the trending asset reports (nova_jobs/trending/assets.py), in size and kind.
TRENDING_LIKE_METADATA = {
    "dagster/row_count": 50, "items_processed": 50, "keys_written": 2, "redis_key": "nova:cache:trending:1h",
    "scoring": "decayed", "top_k": 50, "as_of": "2026-11-30T00:00:00Z", "events_in_window": 25_250,
    "unknown_type_events_ignored": 403, "query_ms": 40, "write_ms": 4, "elapsed_ms": 45,
    "top_post_ids": dg.MetadataValue.json(list(range(10))),
}


def _check_metadata() -> dict:
    return {"keys_checked": 1, "entries_checked": 50, "max_items": 50, "problems": 0,
            "examples": dg.MetadataValue.json([])}


# ---------------------------------------------------------------------------------------------
# Stand-ins (section 3)

def _stand_in_defs() -> dg.Definitions:
    four_key, one_key = dg.AssetKey(["bench", "four_checks"]), dg.AssetKey(["bench", "one_check"])

    @dg.asset(key=["bench", "nothing"])
    def nothing() -> None:
        """The floor."""

    @dg.asset(key=["bench", "lineage"], deps=[POST_EVENTS])
    def lineage() -> None:
        """The floor with trending's lineage: Dagster reads its upstream's asset record in the step."""

    @dg.asset(key=["bench", "metadata"])
    def metadata() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=TRENDING_LIKE_METADATA)

    @dg.asset(key=["bench", "metadata_log"])
    def metadata_log(context) -> dg.MaterializeResult:
        context.log.info("trending 1h: 50 posts from 25250 events (403 of unknown type ignored), scoring=decayed")
        return dg.MaterializeResult(metadata=TRENDING_LIKE_METADATA)

    @dg.asset(key=four_key, check_specs=[dg.AssetCheckSpec(name, asset=four_key) for name in CHECK_NAMES])
    def four_checks(context) -> dg.MaterializeResult:
        context.log.info("trending 1h: 50 posts from 25250 events (403 of unknown type ignored), scoring=decayed")
        return dg.MaterializeResult(metadata=TRENDING_LIKE_METADATA, check_results=[
            dg.AssetCheckResult(check_name=name, passed=True, severity=dg.AssetCheckSeverity.ERROR,
                                metadata=_check_metadata()) for name in CHECK_NAMES])

    @dg.asset(key=one_key, check_specs=[dg.AssetCheckSpec("contents", asset=one_key)])
    def one_check(context) -> dg.MaterializeResult:
        context.log.info("trending 1h: 50 posts from 25250 events (403 of unknown type ignored), scoring=decayed")
        verdicts = {f"{name}_problems": 0 for name in CHECK_NAMES}
        return dg.MaterializeResult(metadata=TRENDING_LIKE_METADATA, check_results=[
            dg.AssetCheckResult(check_name="contents", passed=True, severity=dg.AssetCheckSeverity.ERROR,
                                metadata={**_check_metadata(), **verdicts})])

    assets = [nothing, lineage, metadata, metadata_log, four_checks, one_check]
    return dg.Definitions(assets=[*assets, *warehouse_tables],
                          jobs=[dg.define_asset_job(a.key.path[-1], [a]) for a in assets], executor=dg.in_process_executor)


STAND_INS = {
    "nothing": "floor: one asset that does nothing",
    "lineage": "+ a dependency on warehouse/post_events",
    "metadata": "+ trending-sized metadata (13 entries)",
    "metadata_log": "+ one log line",
    "four_checks": "+ four check results (before)",
    "one_check": "+ one check result, four verdicts in its metadata (as now)",
}


# ---------------------------------------------------------------------------------------------
# Event timeline (section 1)

BEFORE, COMPUTE, AFTER = "before the step", "compute (client, query, write)", "after the step"
STRETCHES = (BEFORE, COMPUTE, "result output", "materialization", "check outputs", "check evaluations", "log line",
             "step: other", "step success", AFTER)


def _step_label(event) -> str:
    if event is None:
        return "log line"
    kind = event.event_type
    if kind == dg.DagsterEventType.STEP_OUTPUT:
        name = event.event_specific_data.step_output_handle.output_name
        return "result output" if name == "result" else "check outputs"
    return {
        dg.DagsterEventType.ASSET_MATERIALIZATION: "materialization",
        dg.DagsterEventType.ASSET_CHECK_EVALUATION: "check evaluations",
        dg.DagsterEventType.STEP_SUCCESS: "step success",
    }.get(kind, "step: other")


def timeline(instance: dg.DagsterInstance, run_id: str, wall_start: float, wall_end: float) -> dict[str, list[float]]:
    """{stretch: [seconds, ...]} for one run. Each gap between consecutive entries of the event
    log goes to the entry that ends it (an entry's timestamp is taken when it is made, before it
    is stored, so a gap holds producing that entry and storing the one before). Everything up
    to STEP_START (creating the run and its *_PLANNED events, the run's event database, run
    start, resources) is one stretch, as is everything after the step's last event."""
    entries = sorted(instance.all_logs(run_id), key=lambda e: e.timestamp)
    stretches: dict[str, list[float]] = {}
    previous, phase = wall_start, "before"
    for entry in entries:
        event = entry.dagster_event
        kind = event.event_type if event is not None else None
        if phase == "before":
            label = BEFORE
            if kind == dg.DagsterEventType.STEP_START:
                phase = "compute"
        elif phase == "compute":
            label, phase = COMPUTE, "step"  # the first entry after STEP_START ends the asset's own work
        elif phase == "step":
            label = _step_label(event)
        else:
            label = AFTER
        if kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            phase = "after"
        stretches.setdefault(label, []).append(entry.timestamp - previous)
        previous = entry.timestamp
    stretches.setdefault(AFTER, []).append(wall_end - previous)
    return stretches


# ---------------------------------------------------------------------------------------------
# cProfile (section 2)

# (label, file suffix, function name): cumulative seconds of the outermost call.
PROFILED = (
    ("whole run (execute_in_process)", "dagster/_core/definitions/job_definition.py", "execute_in_process"),
    ("create run (+ planned events)", "dagster/_core/instance/runs/run_domain.py", "create_run_for_job"),
    ("events stored (sqlite store_event)", "dagster/_core/storage/event_log/sqlite/sqlite_event_log.py", "store_event"),
    ("  of which the run's own event db (_initdb)", "dagster/_core/storage/event_log/sqlite/sqlite_event_log.py", "_initdb"),
    ("  of which asset check rows", "dagster/_core/storage/event_log/sql_event_log.py", "store_asset_check_event"),
    ("console lines (logging StreamHandler.emit)", "logging/__init__.py", "emit"),
    ("  of which correlation handler format", "nova_jobs/observability/correlation.py", "format"),
    ("imports during the run", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("asset compute: trending", "nova_jobs/trending/assets.py", "trending_cache"),
    ("asset compute: feeds", "nova_jobs/feeds/assets.py", "feeds"),
    ("  ClickHouse client open", "nova_jobs/resources/clickhouse.py", "_open"),
    ("  Redis client (import + create)", "nova_jobs/resources/redis.py", "get_client"),
    ("  trending query", "nova_jobs/trending/queries.py", "query_trending_with_stats"),
    ("  trending write", "nova_jobs/lib/cache.py", "publish_with_meta"),
    ("  feeds query + write (streamed)", "nova_jobs/feeds/compute.py", "warm_feeds"),
    ("  content checks", "nova_jobs/lib/cache_checks.py", "content_check_results"),
)


def profile_figures(profile: cProfile.Profile) -> dict[str, dict]:
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    found: dict[str, dict] = {}
    for label, suffix, name in PROFILED:
        best = None
        for (filename, _, function), (_, calls, _, cumulative, _) in stats.items():
            if function == name and filename.endswith(suffix) and (best is None or cumulative > best[1]):
                best = (calls, cumulative)
        if best:
            found[label] = {"calls": best[0], "seconds": best[1]}
    return found


# ---------------------------------------------------------------------------------------------
# Children: each measurement in a process of its own

def _instance(home: str) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(home)


def _nova_job(name: str):
    if name == FLOOR:
        return _stand_in_defs().resolve_job_def(FLOOR)
    from nova_jobs.definitions import defs

    return defs.resolve_job_def(name)


def child_cold(home: str, job_name: str) -> dict:
    """One profiled run of `job_name` in this fresh process, as a launched run's first (only) run."""
    instance = _instance(home)
    job = _nova_job(job_name)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    result = job.execute_in_process(instance=instance, raise_on_error=True)
    profile.disable()
    return {"job": job_name, "wall_s": time.perf_counter() - started, "run_id": result.run_id,
            "profile": profile_figures(profile)}


def child_warm(home: str, runs: int, stand_in_runs: int) -> dict:
    instance = _instance(home)
    jobs = {name: _nova_job(name) for name in (FLOOR, *JOBS)}
    for job in jobs.values():  # warm: imports, clients, the store's caches
        job.execute_in_process(instance=instance)
    walls: dict[str, list[float]] = {name: [] for name in jobs}
    stretches: dict[str, dict[str, list[float]]] = {name: {} for name in jobs}
    counts: dict[str, dict[str, list[int]]] = {name: {} for name in jobs}
    metadata: dict[str, list[dict]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():
            started = time.time()
            result = job.execute_in_process(instance=instance)
            ended = time.time()
            walls[name].append(ended - started)
            for label, seconds in timeline(instance, result.run_id, started, ended).items():
                stretches[name].setdefault(label, []).append(sum(seconds))
                counts[name].setdefault(label, []).append(len(seconds))
            for materialization in result.get_asset_materialization_events():
                meta = materialization.step_materialization_data.materialization.metadata
                metadata[name].append({k: v.value for k, v in meta.items() if k.endswith("_ms")})
    profiles = {}
    for name, job in jobs.items():
        profile = cProfile.Profile()
        profile.enable()
        job.execute_in_process(instance=instance)
        profile.disable()
        profiles[name] = profile_figures(profile)
    # Stand-ins, on this instance and on one without the python_logs handler.
    stand_ins = _stand_in_defs()
    plain_home = tempfile.mkdtemp(prefix="nova-profile-plain-")
    try:
        plain = dg.DagsterInstance.from_config(plain_home)
        variants = {name: (stand_ins.resolve_job_def(name), instance) for name in STAND_INS}
        variants["nothing, no python_logs handler"] = (stand_ins.resolve_job_def("nothing"), plain)
        variants["four_checks, no python_logs handler"] = (stand_ins.resolve_job_def("four_checks"), plain)
        for job, inst in variants.values():
            job.execute_in_process(instance=inst)
        stand_in_walls: dict[str, list[float]] = {name: [] for name in variants}
        stand_in_steps: dict[str, list[float]] = {name: [] for name in variants}
        stand_in_events: dict[str, int] = {}
        for _ in range(stand_in_runs):
            for name, (job, inst) in variants.items():
                started = time.perf_counter()
                result = job.execute_in_process(instance=inst)
                stand_in_walls[name].append(time.perf_counter() - started)
                entries = inst.all_logs(result.run_id)
                step = [e.timestamp for e in entries if e.dagster_event and e.dagster_event.event_type in (
                    dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)]
                stand_in_steps[name].append(step[-1] - step[0])
                stand_in_events[name] = len(entries)
        plain.dispose()
    finally:
        shutil.rmtree(plain_home, ignore_errors=True)
    med = statistics.median
    return {
        "runs": runs,
        "stand_in_runs": stand_in_runs,
        "wall_s": {name: med(values) for name, values in walls.items()},
        "wall_all_s": walls,
        "stretches_s": {name: {label: med(values) for label, values in by.items()} for name, by in stretches.items()},
        "stretch_entries": {name: {label: med(values) for label, values in by.items()} for name, by in counts.items()},
        "reported_ms": {name: {k: med(m[k] for m in values) for k in values[0]} if values and values[0] else {}
                        for name, values in metadata.items()},
        "warm_profile": profiles,
        # Paired: each round's difference from the floor run of the same round (runs back to back
        # see the same load), then the median of those differences.
        "stand_ins": {name: {"wall_s": med(stand_in_walls[name]), "step_s": med(stand_in_steps[name]),
                             "wall_min_s": min(stand_in_walls[name]), "wall_max_s": max(stand_in_walls[name]),
                             "wall_vs_floor_s": med(a - b for a, b in zip(stand_in_walls[name], stand_in_walls["nothing"])),
                             "step_vs_floor_s": med(a - b for a, b in zip(stand_in_steps[name], stand_in_steps["nothing"])),
                             "events": stand_in_events[name]} for name in variants},
    }


# ---------------------------------------------------------------------------------------------
# Parent

def _run_child(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "nova_jobs_dev.bench_profile", "--child", *args], env=env,
                          capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"profile child {args} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(store: Path, runs: int, workdir: Path, stand_in_runs: int = 15) -> dict:
    from nova_jobs_dev.localstack import redis_process

    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nova-profile-", dir=workdir) as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        with redis_process(data_dir=Path(tmp) / "redis") as server:
            env = {**os.environ, "DAGSTER_HOME": str(home), "CLICKHOUSE_URL": f"chdb://{store.resolve()}",
                   "CLICKHOUSE_DATABASE": "nova", "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
                   "KAFKA_BROKERS": os.environ.get("KAFKA_BROKERS", "127.0.0.1:9"), "PYTHONWARNINGS": "ignore"}
            cold = {}
            # trending_24h first, so that cache_warmer finds the 24h list in Redis as it does on schedule.
            _run_child(["cold", str(home), "trending_24h"], env)
            for name in (FLOOR, *JOBS):
                cold[name] = _run_child(["cold", str(home), name], env)
            warm = _run_child(["warm", str(home), str(runs), str(stand_in_runs)], env)
    return {"cold": cold, "warm": warm}


def report(result: dict) -> str:
    warm, cold = result["warm"], result["cold"]
    names = (FLOOR, *JOBS)
    lines = [f"1. Event timeline: warm in-process runs on the repo's dagster.yaml (sqlite), median of {warm['runs']}; "
             "ms (entries in the stretch)"]
    lines.append(f"{'stretch':<34}" + "".join(f"{n:>16}" for n in names))
    for label in STRETCHES:
        if not any(label in warm["stretches_s"][n] for n in names):
            continue
        cells = []
        for n in names:
            seconds = warm["stretches_s"][n].get(label)
            entries = warm["stretch_entries"][n].get(label, 0)
            cells.append("" if seconds is None else f"{seconds * 1000:.0f} ({entries:g})")
        lines.append(f"{label:<34}" + "".join(f"{c:>16}" for c in cells))
    lines.append(f"{'whole run (wall)':<34}" + "".join(f"{warm['wall_s'][n] * 1000:>16.0f}" for n in names))
    for n in JOBS:
        lines.append(f"  {n} reports (median ms): {warm['reported_ms'].get(n)}")
    lines.append("")
    lines.append("2. cProfile, cumulative ms (inflated by the profiler): cold = the first run in a fresh process")
    columns = [(f"{n} cold", cold[n]["profile"]) for n in names] + [(f"{n} warm", warm["warm_profile"][n]) for n in names]
    lines.append(f"{'':<44}" + "".join(f"{c:>19}" for c, _ in columns))
    for label, _, _ in PROFILED:
        if not any(label in figures for _, figures in columns):
            continue
        cells = [f"{f[label]['seconds'] * 1000:.0f} ({f[label]['calls']})" if label in f else "" for _, f in columns]
        lines.append(f"{label:<44}" + "".join(f"{c:>19}" for c in cells))
    lines.append("")
    lines.append(f"3. Stand-ins: {warm['stand_in_runs']} rounds of warm in-process runs, back to back; ms. run, step "
                 "(STEP_START to STEP_SUCCESS): medians; vs floor: median of each round's difference from its floor run")
    for name, row in warm["stand_ins"].items():
        label = STAND_INS.get(name, name)
        lines.append(f"  {label:<52} run {row['wall_s'] * 1000:5.0f} ({row['wall_min_s'] * 1000:.0f}-"
                     f"{row['wall_max_s'] * 1000:.0f})  step {row['step_s'] * 1000:4.0f}  events {row['events']:3d}"
                     f"  vs floor: run {1000 * row['wall_vs_floor_s']:+5.0f}, step {1000 * row['step_vs_floor_s']:+5.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, home, arg = argv[1:4]
        result = child_cold(home, arg) if kind == "cold" else child_warm(home, int(arg), int(argv[4]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(prog="python -m nova_jobs_dev.bench_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000, help="users in the generated data set (50,000)")
    parser.add_argument("--runs", type=int, default=7, help="warm runs per job and stand-in (7)")
    parser.add_argument("--stand-in-runs", type=int, default=15, help="warm runs per stand-in (15)")
    parser.add_argument("--store", type=Path, help="an existing data set (chdb path) instead of generating one")
    parser.add_argument("--workdir", type=Path, default=Path(".nova/bench"))
    parser.add_argument("--results", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    store = args.store
    if store is None:
        from nova_jobs_dev.run_start_bench import ensure_data

        store = (args.workdir / "profile" / "store").resolve()
        ensure_data(store, args.users)
    result = measure(store, args.runs, args.workdir, args.stand_in_runs)
    text = report(result)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (args.results / f"profile-{stamp}.txt").write_text(text + "\n")
    (args.results / f"profile-{stamp}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
