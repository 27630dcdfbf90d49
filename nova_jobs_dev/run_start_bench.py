"""Each cache job's whole run as a schedule runs it, next to Dagster's floor in the same
instance: queued, dequeued by a real `dagster-daemon`, started as a fresh process by the default
run launcher, run, finished.

    python -m nova_jobs_dev.run_start_bench --users 50000 --runs 5
    python -m nova_jobs_dev.run_start_bench --users 50000 --runs 5 --jobs trending_1h,cache_warmer
    python -m nova_jobs_dev.run_start_bench --store .nova/bench/demo/store --dequeue-interval 1   # an experiment
    python -m nova_jobs_dev.bench --only run-start --scale small     # the same, as a section of `make bench`

A temporary DAGSTER_HOME gets the repo's `dagster.yaml` as it is (Nova's queued run coordinator,
its tag limits and default dequeue interval, run monitoring, the default run launcher). Two code
servers, `dagster api grpc` as the image runs the code location, serve the workspace that the
daemon and the bench share (as `dagster dev`'s code servers are shared): `nova_jobs.definitions`,
and this module, whose `defs` are Dagster's floor: a one-asset job whose step does nothing, on the
in-process executor as Nova's jobs are. Schedules and sensors are stopped, so the daemon only
dequeues and launches what the bench submits. Each run is submitted as the UI's launchpad does
(GraphQL `launchPipelineExecution`: the run is created and submitted to the instance's run
coordinator) with no run config, as its schedule's tick does; from then on its path is a scheduled
run's: QUEUED, dequeued by the daemon's run coordinator, launched by the default run launcher
through the code server, which spawns a fresh process for the run. A tick falls anywhere in the
dequeue loop's period, so each submission waits a random part of that period first.

Per run, from the run record (`create_timestamp`, `start_time`, `end_time`) and its event log:

- `queue_s`: created (and enqueued) -> RUN_STARTING, which the daemon's run coordinator writes
  when it dequeues the run, right before launching it: waiting for its next pass (every
  `dequeue_interval_seconds`, 5 by default, so ~2.5 s on average) and the pass itself;
- `start_s`: RUN_STARTING -> RUN_START (the record's `start_time`), the run process's start, in
  two parts: `spawn_s`, until the process's first event ("Started process for run"): the
  daemon's launch call to the code server, which spawns a fresh interpreter that imports Dagster
  and opens the instance; `load_s`, from there to RUN_START: importing the code location
  (`nova_jobs.definitions`) and the instance's log handlers, building the job and its plan;
- `steps_s`: the first STEP_START -> the last step's end (for Nova's jobs the asset's one step,
  which also yields its checks' results);
- `around_s`: the run's own work outside its steps (executor and resource setup, logs captured,
  the run's end): RUN_START -> first STEP_START plus last step end -> `end_time`;
- `total_s` = `end_time` - `create_timestamp` = queue_s + start_s + steps_s + around_s;
- `run_s` = total_s - queue_s: from the dequeue on, where the dequeue loop's phase plays no part.

Rounds run the floor and each job one after another (one run at a time: the embedded store and
the `nova/warehouse` tag limit would queue them anyway), after a warm-up that is not measured: a
run of `trending_24h` (the code location's first launch, the store's caches, and the 24h
trending list, which the warmer reads from Redis as on schedule). The medians of each column are
shown, with the spread (min-max) of `run_s`; the queue wait, which does not depend on the job, is
also pooled over every run. Each run is a fresh process, so its step pays what a warm in-process
run does not: the ClickHouse and Redis clients' imports and, with the embedded store, chdb's start.

Beside the jobs section's limit (the floor's run + the plain query and bare write, timed warm on
an open client), each job's plain formulation also runs in a fresh process right after each of
its runs (`nova_jobs_dev/plain_fresh.py`: the clients imported and opened, the query cold), and
`limit_fresh_s` = the floor's run of that round + that: the limit a plain job reaches as
scheduled. Its ratios are medians over the rounds of the per-round ratios.

This module is also a code location (the floor), so at import it needs nothing but Dagster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from nova_jobs.catalog import CACHE_JOBS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FLOOR_LOCATION = "bench_floor"
FLOOR_JOB = "nothing"
FLOOR_LABEL = "floor (one asset, does nothing)"
SCHEDULED_JOBS = tuple(job.name for job in CACHE_JOBS)
# A bound against a hung run, not a goal: at 1,000,000 users (`make bench`'s default)
# suggested_users and its plain formulation, cold, take minutes.
RUN_TIMEOUT_S = 1200.0
DATABASE = "nova"
PARTS = ("queue_s", "start_s", "steps_s", "around_s")  # they add up to total_s
COLUMNS = ("queue_s", "start_s", "spawn_s", "load_s", "steps_s", "around_s", "total_s", "run_s")  # start_s = spawn_s + load_s


@dg.asset(key=["bench", "nothing"])
def nothing() -> None:
    """Dagster's floor: a one-asset job whose step does nothing."""


defs = dg.Definitions(
    assets=[nothing],
    jobs=[dg.define_asset_job(FLOOR_JOB, [nothing])],
    # As Nova's jobs (nova_jobs/executors.py): a step process of its own would be a floor they do not pay.
    executor=dg.in_process_executor,
)


def job_list(value: str) -> tuple[str, ...]:
    """Cache job names, comma-separated, in the catalog's order."""
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(SCHEDULED_JOBS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown cache job(s) {unknown}; known: {', '.join(SCHEDULED_JOBS)}")
    return tuple(name for name in SCHEDULED_JOBS if name in names)


def floor_module() -> str:
    return "nova_jobs_dev.run_start_bench" if __name__ == "__main__" else __name__


def workspace_yaml(ports: dict[str, int]) -> str:
    return "load_from:\n" + "".join(
        f"  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n      location_name: {location}\n"
        for location, port in ports.items()
    )


def code_server(module: str, location: str, env: dict[str, str], log_path: Path):
    """`dagster api grpc` on a free port, as the image's default command serves the code location."""
    from nova_jobs_dev.localstack import ManagedProcess, free_port

    port = free_port()
    args = [str(Path(sys.executable).with_name("dagster")), "api", "grpc", "-m", module, "--location-name", location,
            "-h", "127.0.0.1", "-p", str(port), "-d", str(PROJECT_ROOT)]
    return ManagedProcess(f"code server {location}", args, port, log_path=log_path, env=env)


def run_timings(instance: dg.DagsterInstance, run_id: str) -> dict:
    """The parts of one finished run's time (see the module's docstring), in seconds."""
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {run_id} did not succeed: {record and record.dagster_run.status}")
    created = record.create_timestamp.timestamp()
    dequeued = process = step_start = step_end = None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_STARTING and dequeued is None:
            dequeued = entry.timestamp  # the daemon's dequeue pass, right before it launches the run
        elif event.event_type == dg.DagsterEventType.ENGINE_EVENT and "Started process for run" in (event.message or ""):
            process = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START and step_start is None:
            step_start = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            step_end = entry.timestamp
    started, ended = record.start_time, record.end_time
    if None in (dequeued, process, started, step_start, step_end, ended):
        raise RuntimeError(f"run {run_id} lacks a mark: dequeued {dequeued}, process {process}, start {started}, "
                           f"steps {step_start}-{step_end}, end {ended}")
    return {
        "queue_s": dequeued - created,
        "start_s": started - dequeued,
        "spawn_s": process - dequeued,
        "load_s": started - process,
        "steps_s": step_end - step_start,
        "around_s": (step_start - started) + (ended - step_end),
        "total_s": ended - created,
        "run_s": ended - dequeued,
    }


def plain_fresh_run(job: str, store: Path, redis_url: str) -> dict:
    """One run of `nova_jobs_dev.plain_fresh` (the job's plain formulation in a fresh process)."""
    done = subprocess.run(
        [sys.executable, "-m", "nova_jobs_dev.plain_fresh", "--job", job, "--store", str(store), "--redis-url", redis_url],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the plain {job} in a fresh process failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(name: str, runs: list[dict]) -> dict:
    row: dict = {"job": name, "runs": len(runs)}
    for column in COLUMNS:
        row[column] = statistics.median(run[column] for run in runs)
    spans = [run["run_s"] for run in runs]
    row["run_min_s"], row["run_max_s"] = min(spans), max(spans)
    return row


def ensure_data(store: Path, users: int, shape: str = "demo", seed: int = 7) -> None:
    """Generate a data set into `store` (closed again, so that the run processes can open it)."""
    from nova_jobs.lib.timing import utc_now
    from nova_jobs.resources.clickhouse import ClickHouseResource
    from nova_jobs_dev.demo.generate import SHAPES, generate_demo

    shutil.rmtree(store, ignore_errors=True)
    with ClickHouseResource(url=f"chdb://{store}", database=DATABASE).get_client() as client:
        started = time.perf_counter()
        stats = generate_demo(client, DATABASE, size=SHAPES[shape](users), seed=seed, now=utc_now().replace(microsecond=0))
        print(f"run-start data ({shape}): {stats} in {time.perf_counter() - started:.1f} s", flush=True)


class Daemon:
    """`dagster-daemon run` on the instance and workspace, its output in a log file."""

    def __init__(self, env: dict[str, str], workspace: Path, log_path: Path) -> None:
        from nova_jobs_dev.localstack import ManagedProcess, default_signals

        self.log_path = log_path
        self.managed = ManagedProcess("dagster-daemon", [], 0)
        with open(log_path, "ab") as log:
            self.managed.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=default_signals, start_new_session=True,
            )

    def check(self) -> None:
        if self.managed.process.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.managed.stop(timeout=20)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(what: str, check, timeout: float, daemon: Daemon, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        daemon.check()
        time.sleep(poll)
    raise TimeoutError(f"{what} after {timeout:.0f} s; daemon log: {daemon.tail()}")


def measure(store: Path, runs: int = 3, jobs: tuple[str, ...] = SCHEDULED_JOBS, workdir: Path | None = None,
            run_timeout: float = RUN_TIMEOUT_S, seed: int = 7, dequeue_interval: int | None = None) -> dict:
    """`runs` measured rounds (after a warm-up) of the floor and each job, submitted one at a
    time to a real queued coordinator and daemon on the data in `store` (a chdb path).
    `dequeue_interval`: an experiment, the repo's dagster.yaml with another dequeue interval."""
    from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from nova_jobs_dev.localstack import redis_process

    store = store.resolve()
    if workdir is not None:
        # Absolute: DAGSTER_HOME below must be (`make bench` passes `.nova/bench`).
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    started_at = time.perf_counter()
    phase = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="nova-run-start-", dir=workdir) as tmp, ExitStack() as stack:
        tmp_path = Path(tmp)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        if dequeue_interval is not None:
            import yaml

            config = yaml.safe_load((home / "dagster.yaml").read_text())
            config["run_coordinator"].setdefault("config", {})["dequeue_interval_seconds"] = dequeue_interval
            (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        server = stack.enter_context(redis_process(data_dir=tmp_path / "redis"))
        env = {
            "DAGSTER_HOME": str(home), "CLICKHOUSE_URL": f"chdb://{store}", "CLICKHOUSE_DATABASE": DATABASE,
            "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
            # Never reached: the DLQ sensors are stopped and a run writes no Kafka message.
            "KAFKA_BROKERS": os.environ.get("KAFKA_BROKERS", "127.0.0.1:9"),
        }
        ports = {}
        for module, location in (("nova_jobs.definitions", "nova_jobs"), (floor_module(), FLOOR_LOCATION)):
            process = stack.enter_context(code_server(module, location, env, tmp_path / f"{location}.log").start(timeout=180))
            ports[location] = process.port
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(workspace_yaml(ports))
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        interval = instance.run_coordinator.dequeue_interval_seconds
        context = stack.enter_context(define_out_of_process_context(str(workspace), None, instance))
        selectors = {}
        for location in context.code_locations:
            for repository in location.get_repositories().values():
                # Only what the bench submits runs: no tick, no sensor in between.
                for schedule in repository.get_schedules():
                    instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
                for sensor in repository.get_sensors():
                    instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
                for job in repository.get_all_jobs():
                    selectors[job.name] = {"repositoryLocationName": location.name,
                                           "repositoryName": repository.name, "pipelineName": job.name}
        missing = [job for job in (FLOOR_JOB, *jobs) if job not in selectors]
        if missing:
            raise RuntimeError(f"jobs not in the workspace: {missing}")

        def submit(job: str) -> str:
            result = execute_dagster_graphql(context, LAUNCH_PIPELINE_EXECUTION_MUTATION, variables={
                "executionParams": {"selector": selectors[job], "runConfigData": {}}})
            launched = result.data["launchPipelineExecution"]
            if launched["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(f"{job} was not submitted: {launched}")
            return launched["run"]["runId"]

        daemon = stack.enter_context(Daemon({**os.environ, **env}, workspace, tmp_path / "daemon.log"))
        wait_until("the daemon's run coordinator", lambda: "QUEUED_RUN_COORDINATOR" in instance.get_daemon_heartbeats(),
                   180, daemon, poll=0.5)
        ready_s = time.perf_counter() - started_at
        measured: dict[str, list[dict]] = {name: [] for name in (FLOOR_JOB, *jobs)}
        plain: dict[str, list[dict]] = {name: [] for name in jobs}  # every cache job has one (plain_fresh.JOBS)
        # Warm-up, not measured: the code location's first launch and the store's caches, and the
        # 24h trending list, which the warmer reads from Redis, where that job's schedule keeps it.
        warm_up = ["trending_24h"] if "cache_warmer" in jobs else list(jobs[:1])
        schedule = [(name, False) for name in warm_up] + [(name, True) for _ in range(runs) for name in measured]
        for name, measuring in schedule:
            time.sleep(phase.uniform(0, interval) if measuring else 0)  # where in the dequeue loop a tick falls
            run_id = submit(name)
            wait_until(f"{name} run {run_id} to finish", lambda: instance.get_run_by_id(run_id).is_finished,
                       run_timeout, daemon, poll=0.25)  # the figures come from the run's records, not from here
            timings = run_timings(instance, run_id)
            if measuring:
                measured[name].append(timings)
            print(f"run-start {name}{'' if measuring else ' (warm-up)'}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()), flush=True)
            if measuring and name in plain:
                # Right after the job's run, on the same machine state: its plain formulation
                # in a fresh process (the run has closed the store, so this one can open it).
                plain[name].append(plain_fresh_run(name, store, env["REDIS_URL"]))
                print(f"run-start {name} plain, fresh process: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in plain[name][-1].items()), flush=True)
    rows = [summarize(FLOOR_LABEL if name == FLOOR_JOB else name, values) for name, values in measured.items()]
    floor = rows[0]
    for row in rows:
        row["run_vs_floor"] = row["run_s"] / floor["run_s"] if floor["run_s"] else 0.0
    # The wait for the dequeue pass does not depend on the job (where in the loop's period a
    # submission falls), and a few samples of it differ by seconds: pooled over every run.
    queues = [run["queue_s"] for values in measured.values() for run in values]
    queue = statistics.median(queues)
    for row, name in zip(rows, measured):
        # The limit a plain job reaches as scheduled: the floor's run plus the plain work in a
        # fresh process (clients imported and opened, the query cold, the write). Paired by round
        # (the floor's run, then the job's, then its plain work), so that a round on a busier
        # machine weighs on both sides: medians of the per-round figures. The floor has none.
        fresh = [run["plain_fresh_s"] for run in plain[name]] if name in plain else [0.0] * len(measured[name])
        limits = [floor_run["run_s"] + seconds for floor_run, seconds in zip(measured[FLOOR_JOB], fresh)]
        runs_s = [run["run_s"] for run in measured[name]]
        row["plain_fresh_s"] = statistics.median(fresh)
        row["limit_fresh_s"] = statistics.median(limits)
        row["run_vs_limit_fresh"] = statistics.median(r / limit for r, limit in zip(runs_s, limits))
        row["vs_limit_fresh"] = statistics.median((queue + r) / (queue + limit) for r, limit in zip(runs_s, limits))
    return {"runs": runs, "dequeue_interval_s": interval, "rows": rows, "all_runs": measured,
            "plain_fresh_runs": plain,
            "queue_all_s": {"median": queue, "mean": statistics.fmean(queues),
                            "min": min(queues), "max": max(queues), "runs": len(queues)},
            "ready_s": ready_s, "wall_s": time.perf_counter() - started_at}


def report(result: dict) -> str:
    from nova_jobs_dev.bench import format_table

    queue = result["queue_all_s"]
    table = format_table(result["rows"], (
        f"Whole run as a schedule runs it: queued coordinator (dequeue every {result['dequeue_interval_s']} s), "
        f"dagster-daemon, default run launcher, a fresh run process; median of {result['runs']} runs each, seconds.\n"
        "total = queue (to the dequeue) + start (to RUN_START; = spawn + load) + steps + around (the run's own work "
        "outside its steps); run = total - queue (from the dequeue on), run_min/max: its spread"
    ))
    table += (f"\n  queue wait over all {queue['runs']} runs (it does not depend on the job): median {queue['median']:.2f} s, "
              f"mean {queue['mean']:.2f} s, {queue['min']:.2f}-{queue['max']:.2f} s")
    if "vs_limit" in result["rows"][0]:
        table += ("\n  limit = the floor's run + the job's plain query + bare Redis write (the jobs section, same data, timed "
                  "warm on an open client); run_vs_limit = run / limit; vs_limit: both sides with the pooled median queue wait added")
    if "limit_fresh_s" in result["rows"][0]:
        table += ("\n  limit_fresh = the floor's run + plain_fresh: the same plain query and bare write in a fresh process "
                  "after `import dagster`, as a run's step must do them (clients imported and opened, the query cold; "
                  "nova_jobs_dev/plain_fresh.py), right after each of the job's runs; per round (floor, job, its plain work) "
                  "run_vs_limit_fresh = run / limit_fresh and vs_limit_fresh = the same with the pooled median queue wait "
                  "added to both sides; medians over the rounds")
    if "fresh_vs_limit" in result["rows"][0]:
        table += ("\n  fresh_vs_limit = limit_fresh / limit: the plain formulation itself, run as a fresh process must run it, "
                  "against the warm limit")
    return table + f"\n  code servers and daemon ready after {result['ready_s']:.0f} s; section wall time {result['wall_s']:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova_jobs_dev.run_start_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50_000, help="users in the generated data set (50,000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per job after a warm-up (3)")
    parser.add_argument("--workdir", type=Path, default=Path(".nova/bench"))
    parser.add_argument("--store", type=Path, help="an existing data set (chdb path) instead of generating one")
    parser.add_argument("--jobs", type=job_list, default=SCHEDULED_JOBS, metavar="JOB[,JOB]",
                        help=f"the cache jobs to run ({','.join(SCHEDULED_JOBS)})")
    parser.add_argument("--dequeue-interval", type=int,
                        help="experiment: the repo's dagster.yaml with this dequeue_interval_seconds")
    args = parser.parse_args(argv)
    store = args.store
    if store is None:
        store = (args.workdir / "run-start" / "store").resolve()
        ensure_data(store, args.users)
    print("\n" + report(measure(store, args.runs, args.jobs, workdir=args.workdir, dequeue_interval=args.dequeue_interval)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
