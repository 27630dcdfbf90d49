"""Error classification on real errors from real clients (closed ports, bad SQL in chdb)."""

from __future__ import annotations

import traceback

import clickhouse_connect
import dagster as dg
import pytest
import redis as redis_lib
from dagster_shared.error import SerializableErrorInfo
from kafka import KafkaProducer

from nova_jobs.lib.errors import (
    classified,
    classify,
    classify_links,
    error_info_chain,
    permanent_failure,
    reraise_classified,
    root_cause,
    root_link,
)
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs_dev.localstack import free_port

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


REFUSING_REPLIES = [
    "READONLY You can't write against a read only replica.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "LOADING Redis is loading the dataset in memory",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "MOVED 3999 127.0.0.1:6381",
    "ASK 3999 127.0.0.1:6381",
]


def recorded(error: BaseException):
    """The error as Dagster records it in the event log (class name and text, no classes)."""
    return SerializableErrorInfo.from_traceback(traceback.TracebackException.from_exception(error))


@pytest.mark.parametrize("reply", REFUSING_REPLIES)
def test_redis_refusing_writes_for_a_while_is_transient_by_class_and_by_reply_text(reply):
    """redis-py turns a reply into its class (prefix stripped); a plain ResponseError keeps the
    prefix as text, also inside a pipeline's annotation. Live and recorded agree."""
    mapped = redis_lib.connection.DefaultParser.parse_error(reply)
    plain = redis_lib.exceptions.ResponseError(reply)
    annotated = redis_lib.exceptions.ResponseError(f"Command # 1 (SET k v) of pipeline caused error: {reply}")
    for error in (mapped, plain, annotated):
        assert classify(error) == "transient", repr((type(error).__name__, str(error)))
        assert classify_links(error_info_chain(recorded(error))) == "transient"


def test_redis_replies_that_never_pass_stay_permanent():
    for reply in ("WRONGTYPE Operation against a key holding the wrong kind of value", "ERR syntax error",
                  "ERR invalid expire time in 'set' command", "NOPERM this user has no permissions"):
        error = redis_lib.connection.DefaultParser.parse_error(reply)
        assert classify(error) == "permanent", reply
        assert classify_links(error_info_chain(recorded(error))) == "permanent"
    # A wrong password: redis-py's AuthenticationError is a ConnectionError, yet retrying never fixes it.
    wrong_password = redis_lib.connection.DefaultParser.parse_error("WRONGPASS invalid username-password pair")
    assert isinstance(wrong_password, redis_lib.ConnectionError)
    assert classify(wrong_password) == "permanent"


def test_a_transaction_on_a_read_only_replica_classifies_by_its_queued_error(redis_url, tmp_path):
    """MULTI on a replica: redis-py raises the queued command's ReadOnlyError while handling
    EXECABORT; the root cause is the READONLY, not the abort."""
    from nova_jobs.lib.cache import publish_with_meta
    from nova_jobs_dev.localstack import redis_process

    primary = redis_lib.Redis.from_url(redis_url)
    with redis_process(data_dir=tmp_path) as replica_server:
        replica = redis_lib.Redis(port=replica_server.port)
        replica.execute_command("REPLICAOF", "127.0.0.1", str(primary.connection_pool.connection_kwargs["port"]))
        error = raised(lambda: publish_with_meta(replica, "nova:test:k", "v", {}))
    assert type(root_cause(error)).__name__ == "ReadOnlyError"
    assert classify(error) == "transient"


@pytest.mark.parametrize(("code", "kind"), [(164, "permanent"), (170, "permanent"), (159, "transient"), (241, "transient")])
def test_clickhouse_codes(code, kind):
    error = RuntimeError(f"Code: {code}. DB::Exception: something. (NAME)")
    assert classify(error) == kind
    assert classify_links(error_info_chain(recorded(error))) == kind


def test_a_classified_block_says_what_it_was_doing_and_keeps_retries_for_transient_errors():
    with pytest.raises(ConnectionResetError):
        with classified("trending query on http://warehouse:8123"):
            raise ConnectionResetError("reset by peer")
    with pytest.raises(dg.Failure) as failure:
        with classified("bad trending configuration"):
            setting_int("NOVA_TEST_SETTING", "many")
    assert failure.value.allow_retries is False
    assert failure.value.description.startswith("bad trending configuration: SettingError")
    # A failure already classified inside (rejected writes) passes through unchanged.
    inner = dg.Failure(description="Redis rejected 3 keys", allow_retries=True)
    with pytest.raises(dg.Failure) as passed:
        with classified("cache warmer"):
            raise inner
    assert passed.value is inner
