"""Error classification on real errors from real clients (closed ports, bad SQL in chdb)."""

from __future__ import annotations

import clickhouse_connect
import dagster as dg
import pytest
import redis as redis_lib
from kafka import KafkaProducer

from nova_jobs.lib.errors import (
    classify,
    classify_links,
    error_info_chain,
    permanent_failure,
    reraise_classified,
    root_cause,
    root_link,
)
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs.localstack import free_port

pytestmark = pytest.mark.integration


def raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as error:  # noqa: BLE001
        return error
    raise AssertionError("expected an error")


def test_unreachable_services_are_transient():
    redis_error = raised(lambda: redis_lib.Redis(port=free_port(), socket_connect_timeout=1, retry=None).ping())
    clickhouse_error = raised(lambda: clickhouse_connect.get_client(
        dsn=f"http://127.0.0.1:{free_port()}", connect_timeout=1).query("SELECT 1"))
    # A fixed api_version skips the 30 s version probe; the send then times out on metadata.
    kafka_error = raised(lambda: KafkaProducer(bootstrap_servers=[f"127.0.0.1:{free_port()}"], api_version=(2, 5, 0),
                                               max_block_ms=500, request_timeout_ms=500).send("t", b"x").get(1))
    for error in (redis_error, clickhouse_error, kafka_error):
        assert classify(error) == "transient", repr(error)
    assert type(root_cause(clickhouse_error)).__name__ == "ConnectionRefusedError"


def test_redis_busy_is_transient_other_replies_are_not():
    assert classify(redis_lib.exceptions.ResponseError("BUSY Redis is busy running a script")) == "transient"
    assert classify(redis_lib.exceptions.BusyLoadingError("Redis is loading the dataset in memory")) == "transient"
    assert classify(redis_lib.exceptions.ResponseError("WRONGTYPE Operation against a key")) == "permanent"


@pytest.mark.parametrize(
    "sql",
    ["SELEC 1", "SELECT * FROM no_such_database.t", "SELECT no_such_column FROM system.one", "SELECT toDateTime('x')"],
)
def test_bad_sql_and_schema_mismatch_are_permanent(clickhouse, sql):
    with clickhouse.get_client() as client:
        error = raised(lambda: client.query(sql))
    assert classify(error) == "permanent"


def test_bad_configuration_and_serialisation_are_permanent():
    import json

    assert classify(raised(lambda: setting_int("NOVA_TEST_SETTING", "many"))) == "permanent"
    assert classify(raised(lambda: json.dumps({"x": float("nan")}, allow_nan=False))) == "permanent"


def test_a_locked_embedded_store_is_transient_despite_its_code():
    # chdb reports a store held by another process with code 36 (BAD_ARGUMENTS).
    assert classify(RuntimeError("Code: 36. DB::Exception: Error initializing EmbeddedServer")) == "transient"
    assert classify(RuntimeError("Code: 36. DB::Exception: Bad arguments")) == "permanent"


def test_reraise_keeps_transient_errors_and_turns_permanent_ones_into_final_failures():
    transient = ConnectionResetError("reset by peer")
    with pytest.raises(ConnectionResetError):
        reraise_classified(transient, "query")
    with pytest.raises(dg.Failure) as failure:
        reraise_classified(raised(lambda: setting_int("NOVA_TEST_SETTING", "many")), "config")
    assert failure.value.allow_retries is False
    assert failure.value.metadata["error_kind"].value == "permanent"
    assert "NOVA_TEST_SETTING" in failure.value.description
    assert permanent_failure(SettingError("x"), "y").metadata["error_class"].value == "SettingError"


def test_recorded_errors_classify_like_live_ones_past_dagsters_wrappers():
    """A step that exhausted its retries: the event log's error is "Exceeded max_retries", the
    root cause is in its cause chain."""
    port = free_port()

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=1, delay=0.01))
    def query_closed_port():
        clickhouse_connect.get_client(dsn=f"http://127.0.0.1:{port}", connect_timeout=1).query("SELECT 1")

    @dg.job
    def probe():
        query_closed_port()

    with dg.instance_for_test() as instance:
        result = probe.execute_in_process(instance=instance, raise_on_error=False)
        error = result.failure_data_for_node("query_closed_port").error
    assert "max_retries" in error.message
    links = error_info_chain(error)
    root = root_link(links)
    assert root.cls_name == "ConnectionRefusedError"
    assert "Connection refused" in root.message
    assert classify_links(links) == "transient"
