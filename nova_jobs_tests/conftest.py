"""Real servers for the tests: one embedded ClickHouse (chdb) store, one redis-server and one
tansu Kafka broker per test session, each on a free port or path of its own, stopped at the end.

One process can open one chdb path, so every in-process test shares the session's store and
gets a database of its own. Tests that start other processes on ClickHouse give them their own
store path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import redis as redis_lib

from nova_jobs.deadletter.kafka_io import read_topics
from nova_jobs.deadletter.message import DLQ_TOPIC
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.warehouse.schema import create_source_tables
from nova_jobs_dev.localstack import ManagedProcess, redis_process, tansu_process


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"chdb://{tmp_path_factory.mktemp('chdb') / 'store'}"
    # Holding one client open keeps the embedded server up between tests (opening costs ~0.4 s).
    with ClickHouseResource(url=url).get_client():
        yield url


@pytest.fixture
def clickhouse(chdb_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickHouseResource]:
    """A ClickHouse resource on a fresh database holding the contract's (empty) source tables."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CLICKHOUSE_URL", chdb_url)
    monkeypatch.setenv("CLICKHOUSE_DATABASE", database)
    resource = ClickHouseResource(url=chdb_url, database=database, lock_wait_seconds=5)
    with resource.get_client() as client:
        create_source_tables(client, database)
    yield resource
    with resource.get_client() as client:
        client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    with redis_process(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis_lib.Redis.from_url(url).flushdb()
    monkeypatch.setenv("REDIS_URL", url)
    return url


@pytest.fixture
def redis_resource(redis_url: str) -> RedisResource:
    return RedisResource(url=redis_url)


@pytest.fixture
def redis_client(redis_url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(redis_url, decode_responses=True)


def _tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A tansu broker on a free port, logging under a fresh temporary folder, stopped after."""
    with tansu_process(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker


def _use_broker(broker: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> str:
    """The broker's address, set as the test's KAFKA_BROKERS."""
    brokers = f"127.0.0.1:{broker.port}"
    monkeypatch.setenv("KAFKA_BROKERS", brokers)
    return brokers


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    yield from _tansu_broker(tmp_path_factory)


@pytest.fixture
def kafka_brokers(kafka_broker: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> str:
    return _use_broker(kafka_broker, monkeypatch)


@pytest.fixture
def kafka_resource(kafka_brokers: str) -> KafkaResource:
    return KafkaResource(brokers=kafka_brokers)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A broker for one test module alone: its DLQ topics hold only that module's records."""
    yield from _tansu_broker(tmp_path_factory)


@pytest.fixture
def kafka(own_broker: ManagedProcess, monkeypatch: pytest.MonkeyPatch) -> KafkaResource:
    """The module's own broker, with replays due at once."""
    brokers = _use_broker(own_broker, monkeypatch)
    monkeypatch.setenv("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", "0")
    return KafkaResource(brokers=brokers)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def insert_rows(resource: ClickHouseResource, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Insert hand-written rows into a source table of the resource's database."""
    with resource.get_client() as client:
        client.insert(f"{resource.database_name}.{table}", [list(row) for row in rows], column_names=columns)


def materialize_with_metadata(assets, node: str, resources: dict, config: dict, instance=None):
    """Materialize `assets` with `config` for op `node`; (result, the node's materialization
    metadata as plain values, empty when the run failed)."""
    result = dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        run_config={"ops": {node: {"config": config}}},
        raise_on_error=False,
    )
    metadata = {}
    if result.success:
        materialization = result.asset_materializations_for_node(node)[0]
        metadata = {key: value.value for key, value in materialization.metadata.items()}
    return result, metadata


def cached_json(redis_client: redis_lib.Redis, key: str):
    """The JSON value of a cache key, or None when the key is missing."""
    value = redis_client.get(key)
    return None if value is None else json.loads(value)


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def dlq_messages(kafka: KafkaResource, run_ids) -> list[dict]:
    """The `jobs-dlq` messages of `run_ids`, each checked to be keyed by its job. Other tests
    share the broker and put hostile records on the topic: those are passed over."""
    records, _ = read_topics(kafka, [DLQ_TOPIC], max_records=1_000_000, deadline_seconds=60)
    found = []
    for record in records:
        try:
            data = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict) and data.get("run_id") in run_ids:
            assert record.key == data["job_name"].encode()
            found.append(data)
    return found


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM a daemon started in a session of its own (and its children), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
