"""The resources' settings as the UI's resource page shows them (their real defaults, or the name
of the variable that sets them, never a secret) and as a run sees them; a bad value fails the
run at launch naming its variable; the `dlq` CLI builds the Kafka resource the jobs get."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
# No public API shows a resource's page: this snapshot is what the code location sends the UI.
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql, infer_resource_selector

from nova_jobs.deadletter.message import build_message
from nova_jobs.lib.redact import redact_text
from nova_jobs.lib.settings import SettingError
from nova_jobs.resources import CLICKHOUSE_VARIABLES, KAFKA_VARIABLES, kafka_resource_from_env, resources_from_env
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.resources.redis import RedisResource

OPTIONAL = (*CLICKHOUSE_VARIABLES.values(), *KAFKA_VARIABLES.values())
SASL_PASSWORD = "kafka-Pa55-word"
DEFAULTS = {
    "clickhouse": {"database": "nova", "timeout_ms": 300000, "lock_wait_seconds": 120.0},
    "kafka": {"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "",
              "sasl_password": "", "ssl_cafile": "", "request_timeout_ms": 5000},
}


@dg.op
def probe(clickhouse: ClickHouseResource, redis: RedisResource, kafka: KafkaResource) -> dict:
    """What the run's resources hold (their fields) and use (the settings they resolve); it
    talks to each server the settings allow."""
    security = kafka._security()
    with clickhouse.get_client() as client:
        assert client.command("SELECT 1") == 1
    assert redis.get_client().ping()
    if security["security_protocol"] == "PLAINTEXT":
        admin = kafka.admin()
        try:
            admin.list_topics()
        finally:
            admin.close()
    return {
        "fields": {"database": clickhouse.database, "timeout_ms": clickhouse.timeout_ms,
                   **{field: getattr(kafka, field) for field in KAFKA_VARIABLES if field != "sasl_password"}},
        "database": clickhouse.database_name,
        "timeout_seconds": clickhouse._timeout_seconds(),
        "kafka": {k: v for k, v in security.items() if k != "sasl_plain_password"},
        "sasl_password_seen": security.get("sasl_plain_password") == SASL_PASSWORD,
        "sasl_password_field": kafka.sasl_password == SASL_PASSWORD,
    }


@dg.job
def probe_job():
    probe()


def definitions() -> dg.Definitions:
    """Loaded now, as the code location loads: the environment of this moment decides."""
    return dg.Definitions(jobs=[probe_job], resources=resources_from_env())


RESOURCE_PAGE = """query($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { configuredValues { key value type } configFields { name defaultValueAsJson } }
  } }"""


def env_var(name: str) -> dict:
    """How the resource page shows a field set with `dg.EnvVar`: the variable's name."""
    return {"value": name, "type": "ENV_VAR"}


def resource_pages() -> tuple[dict, str]:
    """What the UI's resource page shows for each resource of a code location loaded now, in a
    code server of its own (GraphQL, as the UI asks): (resource -> (configured values by field,
    defaults by field), every answer as text)."""
    pages, answers = {}, []
    location = Path(__file__).with_name("resource_page_location.py")
    with dg.instance_for_test() as instance:
        with define_out_of_process_context(str(location), "defs", instance) as context:
            for name in ("clickhouse", "redis", "kafka"):
                result = execute_dagster_graphql(context, RESOURCE_PAGE,
                                                 variables={"selector": infer_resource_selector(context, name)})
                page = result.data["topLevelResourceDetailsOrError"]
                assert page["__typename"] == "ResourceDetails", result.data
                answers.append(json.dumps(result.data))
                pages[name] = (
                    {v["key"]: {"value": v["value"], "type": v["type"]} for v in page["configuredValues"]},
                    {f["name"]: f["defaultValueAsJson"] for f in page["configFields"]},
                )
    return pages, "\n".join(answers)


@pytest.fixture
def no_optional_settings(monkeypatch):
    for name in OPTIONAL:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def servers(clickhouse, redis_url, kafka_brokers, no_optional_settings):
    """CLICKHOUSE_URL, REDIS_URL and KAFKA_BROKERS on the test's servers, nothing optional set
    (no_optional_settings comes after clickhouse, so the CLICKHOUSE_DATABASE it sets is unset)."""
    assert "CLICKHOUSE_DATABASE" not in os.environ
    return clickhouse


def test_with_no_optional_variable_the_page_shows_the_real_defaults(no_optional_settings):
    pages, _ = resource_pages()
    assert pages["clickhouse"][0] == {"url": env_var("CLICKHOUSE_URL")}
    assert pages["redis"][0] == {"url": env_var("REDIS_URL")}
    assert pages["kafka"][0] == {"brokers": env_var("KAFKA_BROKERS")}
    for resource, defaults in DEFAULTS.items():
        shown = {name: value for name, value in pages[resource][1].items() if name in defaults}
        assert {name: json.loads(value) for name, value in shown.items()} == defaults


@pytest.mark.integration
def test_with_no_optional_variable_a_job_loads_and_runs_on_the_defaults(servers, instance):
    result = definitions().resolve_job_def("probe_job").execute_in_process(instance=instance)
    assert result.success
    seen = result.output_for_node("probe")
    assert seen["database"] == "nova" and seen["timeout_seconds"] == 300.0
    assert seen["kafka"] == {"security_protocol": "PLAINTEXT"}
    assert seen["fields"] == {"database": "nova", "timeout_ms": 300000, "security_protocol": "PLAINTEXT",
                              "sasl_mechanism": "PLAIN", "sasl_username": "", "ssl_cafile": ""}


SET = {
    "CLICKHOUSE_TIMEOUT_MS": "1234",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "nova-jobs",
    "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
    "KAFKA_SSL_CAFILE": "/etc/ssl/certs/ca-certificates.crt",
}


@pytest.mark.integration
def test_each_variable_set_is_shown_by_name_and_seen_by_the_run(servers, instance, monkeypatch):
    database = servers.database  # the test's own database on the real store
    for name, value in {**SET, "CLICKHOUSE_DATABASE": database}.items():
        monkeypatch.setenv(name, value)
    defs = definitions()
    pages, _ = resource_pages()
    for resource, variables in (("clickhouse", CLICKHOUSE_VARIABLES), ("kafka", KAFKA_VARIABLES)):
        for field, name in variables.items():
            assert pages[resource][0][field] == env_var(name)

    result = defs.resolve_job_def("probe_job").execute_in_process(instance=instance)
    assert result.success
    seen = result.output_for_node("probe")
    # The fields themselves hold the values (set through dg.EnvVar), not only what they resolve to.
    assert seen["fields"] == {"database": database, "timeout_ms": 1234, "security_protocol": "SASL_SSL",
                              "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "nova-jobs",
                              "ssl_cafile": "/etc/ssl/certs/ca-certificates.crt"}
    assert seen["database"] == database and seen["timeout_seconds"] == 1.234
    assert seen["kafka"] == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                             "sasl_plain_username": "nova-jobs", "ssl_cafile": "/etc/ssl/certs/ca-certificates.crt"}
    assert seen["sasl_password_field"] and seen["sasl_password_seen"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"CLICKHOUSE_DATABASE": "x-y"}, "CLICKHOUSE_DATABASE='x-y' is not a valid ClickHouse identifier"),
        ({"CLICKHOUSE_TIMEOUT_MS": "abc"}, "CLICKHOUSE_TIMEOUT_MS='abc' is not a whole number"),
        ({"CLICKHOUSE_TIMEOUT_MS": "0"}, "CLICKHOUSE_TIMEOUT_MS=0 must be at least 1"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"},
         "KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
         "KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ],
)
def test_a_bad_value_fails_the_run_at_launch_naming_the_variable(servers, instance, monkeypatch, settings, message):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    result = definitions().resolve_job_def("probe_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    # At launch: the resources' setup refused, and no step started.
    kinds = {e.event_type for e in result.all_events}
    assert dg.DagsterEventType.RESOURCE_INIT_FAILURE in kinds and dg.DagsterEventType.STEP_START not in kinds
    dead = build_message(instance, instance.get_run_by_id(result.run_id))
    assert (dead.error, dead.error_class, dead.kind) == (message, "SettingError", "permanent")


def test_secrets_are_shown_by_variable_name_only(no_optional_settings, monkeypatch):
    clickhouse_password, redis_password = "ch-Pa55-word", "redis-Pa55-word"
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("CLICKHOUSE_URL", f"https://nova:{clickhouse_password}@ch.nova.internal:8443")
    monkeypatch.setenv("REDIS_URL", f"rediss://:{redis_password}@redis.nova.internal:6380/0")
    pages, sent = resource_pages()
    assert pages["kafka"][0]["sasl_password"] == env_var("KAFKA_SASL_PASSWORD")
    assert pages["clickhouse"][0]["url"] == env_var("CLICKHOUSE_URL")
    # Nothing the UI is told about the resources holds a password.
    assert "KAFKA_SASL_PASSWORD" in sent
    for secret in (SASL_PASSWORD, clickhouse_password, redis_password):
        assert secret not in sent
        # ...and the redaction knows each, since each comes from its variable.
        assert secret not in redact_text(f"login with {secret} refused")


def test_the_cli_builds_the_kafka_resource_the_jobs_get(no_optional_settings, monkeypatch):
    for name, value in SET.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BROKERS", "kafka-1:9093")
    cli = kafka_resource_from_env()
    jobs = resources_from_env()["kafka"].process_config_and_initialize()
    assert cli.bootstrap_servers == jobs.bootstrap_servers == ["kafka-1:9093"]
    assert cli._security() == jobs._security() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "nova-jobs",
        "sasl_plain_password": SASL_PASSWORD, "ssl_cafile": "/etc/ssl/certs/ca-certificates.crt",
    }
    assert kafka_resource_from_env("kafka-2:9093").bootstrap_servers == ["kafka-2:9093"]
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(SettingError, match="KAFKA_SECURITY_PROTOCOL='TLS' is not one of"):
        kafka_resource_from_env()


def test_the_cli_reports_a_bad_kafka_setting_in_one_line(no_optional_settings, monkeypatch, capfd):
    from nova_jobs.cli import main

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "GSSAPI")
    assert main(["dlq", "list", "--brokers", "127.0.0.1:9"]) == 2
    assert capfd.readouterr().err.strip().splitlines() == [
        "nova-jobs dlq: error: KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"]


def test_a_failed_redis_command_is_left_to_the_jobs_retry_policy():
    """A server that accepts and hangs up at once: the client makes one connection and raises,
    so waiting out an outage is the job's RetryPolicy's to do (the README's retry layers); a
    redis-py upgrade that retried on its own would multiply them."""
    import socket
    import threading

    import redis as redis_lib

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def hang_up():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        client = RedisResource(url=f"redis://127.0.0.1:{listener.getsockname()[1]}/0").get_client()
        with pytest.raises(redis_lib.ConnectionError):
            client.set("nova:cache:trending:1h", "[]")
    finally:
        listener.close()
    assert len(accepted) == 1
