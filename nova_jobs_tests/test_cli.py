"""`nova-jobs` as an operator meets it: one-line errors, exit 2 for bad usage, quiet on success."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nova_jobs.deadletter.kafka_io import publish_json
from nova_jobs.deadletter.message import DLQ_TOPIC, DlqMessage
from nova_jobs.lib.timing import iso_z
from nova_jobs_dev.localstack import free_port

NOVA_JOBS = str(Path(sys.executable).parent / "nova-jobs")


def nova_jobs(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKERS"}
    return subprocess.run([NOVA_JOBS, *args], env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("dlq", "list"), ("dlq", "replay", "some-id")])
def test_missing_brokers_is_one_line_and_exit_2(args):
    result = nova_jobs(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["nova-jobs dlq: error: KAFKA_BROKERS is not set"]


def test_bad_brokers_value_is_named_without_a_traceback():
    result = nova_jobs("dlq", "list", "--brokers", "localhost")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["nova-jobs dlq: error: KAFKA_BROKERS entry 'localhost' is not host:port"]


def test_an_unreachable_broker_is_one_line_and_a_failure_exit():
    result = nova_jobs("dlq", "list", "--brokers", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("nova-jobs dlq: failed: ") and "-v for details" in line


@pytest.mark.integration
def test_a_successful_replay_and_list_print_only_their_result(kafka_resource, kafka_brokers):
    run_id = str(uuid.uuid4())
    message = DlqMessage(job_name="trending_1h", error="[Errno 111] Connection refused",
                         error_class="ConnectionRefusedError", kind="transient", timestamp=iso_z(datetime.now(UTC)),
                         retry_count=3, correlation_id=run_id, run_id=run_id, context={"window": "1h"})
    publish_json(kafka_resource, DLQ_TOPIC, [(message.job_name, message.to_dict())])

    replay = nova_jobs("dlq", "replay", run_id, KAFKA_BROKERS=kafka_brokers)
    assert replay.returncode == 0, replay.stderr
    assert replay.stderr == ""  # no kafka-python INFO, no "Metadata refresh: failed Cancelled"
    [line] = replay.stdout.splitlines()
    assert line.startswith("replay requested: trending_1h run " + run_id)

    listing = nova_jobs("dlq", "list", "--job", "trending_1h", KAFKA_BROKERS=kafka_brokers)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stderr.splitlines()) == 1 and listing.stderr.endswith("message(s)\n")
    assert any(run_id in row and "replay requested" in row for row in listing.stdout.splitlines())

    # Asked for, the details are there.
    verbose = nova_jobs("dlq", "list", "--job", "trending_1h", "-v", KAFKA_BROKERS=kafka_brokers)
    assert verbose.returncode == 0
    assert "kafka" in verbose.stderr
