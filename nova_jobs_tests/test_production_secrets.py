"""Credentials never reach run metadata, failure messages or logs; TLS and auth URLs are accepted."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from nova_jobs.lib.redact import redact_text, redact_url
from nova_jobs.resources.clickhouse import ClickHouseResource, validate_clickhouse_url
from nova_jobs.resources.kafka import KafkaResource
from nova_jobs.resources.redis import RedisResource, validate_redis_url
from nova_jobs.trending.assets import build_trending_asset
from nova_jobs.trending.windows import WINDOWS

PASSWORD = "s3cretPa55"


class RejectingClickHouse(BaseHTTPRequestHandler):
    """Answers every query the way a ClickHouse server answers a wrong password."""

    def _reject(self) -> None:
        body = b"Code: 516. DB::Exception: nova: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED)\n"
        self.send_response(401)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reject

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def rejecting_clickhouse():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RejectingClickHouse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://nova:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_a_failed_run_on_a_url_with_a_password_never_shows_the_password(rejecting_clickhouse, redis_resource):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [build_trending_asset(WINDOWS["1h"])],
        resources={"clickhouse": ClickHouseResource(url=rejecting_clickhouse, lock_wait_seconds=0),
                   "redis": redis_resource},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    message = failures[0].step_failure_data.error.to_string()
    assert "Authentication failed" in message  # the failure is still useful...
    assert "127.0.0.1" in message
    # ...and it failed for good at once: an auth failure is permanent, no retries.
    assert not [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"]

    everything = repr(result.all_events) + repr(instance.all_logs(result.run_id))
    assert PASSWORD not in everything
    assert PASSWORD not in repr(failures[0].step_failure_data.user_failure_data)


def test_tls_and_auth_urls_are_accepted_and_displayed_redacted():
    assert validate_clickhouse_url(f"https://nova:{PASSWORD}@ch.nova.internal:8443") == "https"
    clickhouse = ClickHouseResource(url=f"https://nova:{PASSWORD}@ch.nova.internal:8443")
    assert clickhouse.display_url == "https://nova:***@ch.nova.internal:8443"

    validate_redis_url(f"rediss://:{PASSWORD}@redis.nova.internal:6380/0")
    validate_redis_url(f"rediss://cache-user:{PASSWORD}@redis.nova.internal:6380/0")
    redis = RedisResource(url=f"rediss://cache-user:{PASSWORD}@redis.nova.internal:6380/0")
    assert PASSWORD not in redis.display_url and "rediss://cache-user:***@" in redis.display_url
    client = redis.get_client()  # builds the pool without connecting
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_kafka_sasl_ssl_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "nova-jobs")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/ssl/certs/ca-certificates.crt")
    options = KafkaResource(brokers="kafka-1:9093,kafka-2:9093")._security()
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "nova-jobs",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "/etc/ssl/certs/ca-certificates.crt",
    }
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(Exception, match="KAFKA_SECURITY_PROTOCOL"):
        KafkaResource(brokers="kafka-1:9093")._security()


def test_kafka_sasl_ssl_options_come_from_the_resource_fields(monkeypatch):
    """What `resources_from_env` sets (as dg.EnvVar): the fields alone, nothing in the environment."""
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                 "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)
    kafka = KafkaResource(brokers="kafka-1:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                          sasl_username="nova-jobs", sasl_password=PASSWORD, ssl_cafile="/etc/nova/ca.pem")
    assert kafka._security() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "nova-jobs",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "/etc/nova/ca.pem",
    }
    # Plain SSL: no SASL options, the CA bundle still applies.
    assert KafkaResource(brokers="kafka-1:9093", security_protocol="SSL", ssl_cafile="/etc/nova/ca.pem",
                         sasl_password=PASSWORD)._security() == {"security_protocol": "SSL",
                                                                 "ssl_cafile": "/etc/nova/ca.pem"}


@pytest.mark.parametrize("text", [
    f"HTTPDriver for http://nova:{PASSWORD}@127.0.0.1:8123 received ClickHouse error",
    f"Error connecting to rediss://:{PASSWORD}@redis:6380/0",
    f"postgresql+psycopg2://dagster:{PASSWORD}@pg:5432/dagster?sslmode=require",
    f"https://ch:8443/?user=nova&password={PASSWORD}",
])
def test_redaction_removes_passwords_from_free_text(text):
    assert PASSWORD not in redact_text(text)
    url = text.split()[-1]
    assert PASSWORD not in redact_url(url)
