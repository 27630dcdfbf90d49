"""A password holding any URL-special character is never printed: not by a setting error, not by
free-text redaction, not in a failed run's event log, stderr or DLQ message; and a password
percent-encoded in the URL still authenticates against a real redis-server."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

import dagster as dg
import pytest
import redis as redis_lib
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nova_jobs.deadletter.message import build_message
from nova_jobs.lib.redact import redact_text, redact_url
from nova_jobs.lib.settings import SettingError
from nova_jobs.observability.correlation import correlation_handler
from nova_jobs.resources.clickhouse import ClickHouseResource, validate_clickhouse_url
from nova_jobs.resources.redis import RedisResource, validate_redis_url
from nova_jobs_dev.localstack import free_port

# Every character that ends or splits a part of a URL, and some that do not.
HOSTILE = "#?/@:%[] &=+;'\"\\"
passwords = st.text(alphabet=st.sampled_from("aZ9-._~" + HOSTILE), min_size=8, max_size=24).filter(
    lambda p: any(c in HOSTILE for c in p) and p.strip() == p
)
TEMPLATES = [
    "rediss://default:{}@redis.nova.internal:6380/0",
    "redis://:{}@127.0.0.1:6379/0",
    "https://nova:{}@ch.nova.internal:8443",
    "http://nova:{}@127.0.0.1:8123/nova",
    "chdb://nova:{}@store/var/lib/nova",
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


def each_template(test):
    """Run `test(template, password)` for every template, with SETTINGS' count of passwords."""
    return pytest.mark.parametrize("template", TEMPLATES)(SETTINGS(given(password=passwords)(test)))


def secret_url(template: str, password: str) -> str:
    """The template holding the password. A password found in the template's own text is
    rejected (hypothesis draws another): no assertion could tell it from the template."""
    assume(password not in template.format(""))
    return template.format(password)


def _chain_text(error: BaseException) -> str:
    """The error and every cause or context behind it, as a traceback would show them."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


@pytest.fixture
def no_configured_secrets(monkeypatch):
    """Only the structural layer of redaction: nothing to learn the password from."""
    for name in ("REDIS_URL", "CLICKHOUSE_URL", "KAFKA_SASL_PASSWORD", "DAGSTER_PG_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@each_template
def test_a_bad_url_setting_never_shows_its_password(no_configured_secrets, template, password):
    url = secret_url(template, password)
    clickhouse = template.startswith(("http", "chdb"))
    validate = validate_clickhouse_url if clickhouse else validate_redis_url
    try:
        validate(url)
    except SettingError as error:
        text = _chain_text(error)
        assert password not in text
        assert ("CLICKHOUSE_URL" if clickhouse else "REDIS_URL") in text
        if not template.startswith("chdb"):
            # Still useful: the host the operator has to look at.
            assert template.split("@", 1)[1].split(":")[0] in text
    else:
        # Only a password no client would misread passes, and it is shown masked.
        assert not any(c in password for c in "#?/@[] ") and not template.startswith("chdb")
        resource = ClickHouseResource(url=url) if clickhouse else RedisResource(url=url)
        assert password not in resource.display_url


@each_template
def test_redaction_removes_any_password_from_any_message(no_configured_secrets, template, password):
    url = secret_url(template, password)
    for message in (
        f"Error connecting to {url}. Connection refused.",
        f"REDIS_URL={url!r} is wrong",
        f"{{'url': '{url}', 'timeout': 10}}",
        f"first {url}\nsecond line {url} end",
        f"percent-encoded {template.format(quote(password, safe=''))} too",
    ):
        redacted = redact_text(message)
        assert password not in redacted and quote(password, safe="") not in redacted, redacted
    assert password not in redact_url(url)


@SETTINGS
@given(password=passwords)
def test_configured_secrets_are_redacted_wherever_they_appear(monkeypatch, password):
    monkeypatch.setenv("REDIS_URL", f"redis://default:{quote(password, safe='')}@cache:6379/0")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", password[::-1])
    for message in (f"AUTH failed for {password}", f"sasl password {password[::-1]} rejected",
                    f"encoded {quote(password, safe='')} here"):
        redacted = redact_text(message)
        assert password not in redacted and password[::-1] not in redacted, redacted


def test_redaction_keeps_what_is_not_secret():
    assert redact_url("https://nova:pw@ch.nova.internal:8443/db") == "https://nova:***@ch.nova.internal:8443/db"
    assert redact_url("chdb:///var/lib/nova/chdb") == "chdb:///var/lib/nova/chdb"
    assert redact_text("Error 111 connecting to 127.0.0.1:6380. Connection refused.") == (
        "Error 111 connecting to 127.0.0.1:6380. Connection refused.")
    assert redact_text("x redis://u:p@ss/w@rd@cache:6380/0 y") == "x redis://u:***@cache:6380/0 y"


def test_the_log_handler_on_stderr_redacts(monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-Secret-1")
    stream = io.StringIO()
    logger = logging.Logger("nova_jobs.test_secrets")
    logger.addHandler(correlation_handler(stream))
    logger.error("cannot reach rediss://default:S3cr#t/Pass@cache:6380/0")
    logger.error("SASL login with kafka-Secret-1 failed")
    try:
        raise ConnectionError("https://nova:Hunter2#x@ch:8443 refused")
    except ConnectionError:
        logger.exception("query failed")
    written = stream.getvalue()
    assert "cache:6380" in written and "ch:8443" in written
    for secret in ("S3cr#t/Pass", "t/Pass", "kafka-Secret-1", "Hunter2"):
        assert secret not in written, written


def test_settings_show_only_scheme_host_and_port():
    with pytest.raises(SettingError) as caught:
        validate_redis_url("rediss://default:S3cr#tPass@host:6380/0")
    assert str(caught.value).startswith("REDIS_URL='rediss://***@host:6380/0': ")
    assert "percent-encode" in str(caught.value)
    with pytest.raises(SettingError, match=r"CLICKHOUSE_URL='chdb://\*\*\*@store/x': the embedded engine"):
        validate_clickhouse_url("chdb://user:pw@store/x")
    assert ClickHouseResource(url="https://nova:Hunter2%23x@ch:8443").display_url == "https://nova:***@ch:8443"


# Passwords a person might really choose, with every URL-special character between them.
REAL_PASSWORDS = ["S3cr#t/P@ss?w:rd", "50% [off] & more=x", "p@ss word;\\'\"+~"]


@pytest.mark.integration
@pytest.mark.parametrize("password", REAL_PASSWORDS)
def test_a_percent_encoded_password_authenticates_against_redis(redis_server, password):
    admin = redis_lib.Redis(port=redis_server.port)
    admin.config_set("requirepass", password)
    try:
        url = f"redis://default:{quote(password, safe='')}@127.0.0.1:{redis_server.port}/0"
        validate_redis_url(url)
        assert RedisResource(url=url).get_client().ping()
        with pytest.raises(redis_lib.AuthenticationError):
            RedisResource(url=f"redis://default:wrong@127.0.0.1:{redis_server.port}/0").get_client().ping()
        # The same URL on a closed port: the client's error (what a transient failure records
        # as it is) does not carry the password either.
        closed = url.replace(f":{redis_server.port}/", f":{free_port()}/")
        with pytest.raises(redis_lib.ConnectionError) as caught:
            RedisResource(url=closed, socket_timeout_seconds=2).get_client().ping()
        assert "Connection refused" in _chain_text(caught.value)
        assert password not in _chain_text(caught.value) and quote(password, safe="") not in _chain_text(caught.value)
    finally:
        redis_lib.Redis(port=redis_server.port, password=password).config_set("requirepass", "")


def _run_trending(instance):
    from nova_jobs.definitions import defs

    return defs.resolve_job_def("trending_1h").execute_in_process(instance=instance, raise_on_error=False)


@pytest.mark.integration
def test_a_failed_run_shows_the_password_nowhere(clickhouse, redis_url, tmp_path, project_root, capfd, monkeypatch):
    """A password that is not percent-encoded fails the run at launch, naming REDIS_URL, and
    is in none of the run's event log, stderr (the correlation handler) or DLQ message."""
    password = REAL_PASSWORDS[0]
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    monkeypatch.setenv("REDIS_URL", f"redis://default:{password}@127.0.0.1:{port}/0")
    python_logs = yaml.safe_load((project_root / "dagster.yaml").read_text())["python_logs"]
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"python_logs": python_logs}) as instance:
        capfd.readouterr()
        result = _run_trending(instance)
        stderr = capfd.readouterr().err
        assert not result.success
        records = repr(instance.all_logs(result.run_id))
        message = build_message(instance, instance.get_run_by_id(result.run_id))
    assert message.error_class == "SettingError" and message.kind == "permanent"
    assert "REDIS_URL='redis://***@127.0.0.1:" in message.error and "percent-encode" in message.error
    assert "percent-encode" in records
    assert "[correlation_id=" in stderr and "percent-encode" in stderr
    for shown in (records, stderr, message.encode().decode()):
        for form in (password, quote(password, safe=""), "t/P@ss"):
            assert form not in shown


def test_the_cli_reports_a_bad_setting_redacted(monkeypatch, capfd):
    from nova_jobs.cli import main

    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-Secret-9")
    # A bad setting is bad usage: one line, exit 2, the secret masked.
    assert main(["dlq", "list", "--brokers", "kafka-Secret-9"]) == 2
    err = capfd.readouterr().err
    assert "KAFKA_BROKERS entry '***' is not host:port" in err
    assert "kafka-Secret-9" not in err


def test_the_cli_log_lines_are_redacted(monkeypatch, capfd):
    from nova_jobs.cli import main

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # let main() install its handler, as in a fresh process
    monkeypatch.setattr(root, "level", root.level)
    assert main(["dlq", "list", "--brokers", "not-a-broker"]) == 2
    logging.getLogger("nova_jobs.anything").error("cannot reach redis://u:p@ss/w#rd@cache:6379/0")
    err = capfd.readouterr().err
    assert "redis://u:***@cache:6379/0" in err and "p@ss" not in err and "w#rd" not in err
