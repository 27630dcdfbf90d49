"""The exporter and /health/jobs on a real Dagster instance with real trending runs (chdb,
redis-server), the cache asset checks, correlation-id logs, and the shipped dashboard and alert
rules checked against what the exporter serves (promtool)."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nova_jobs.deadletter.message import build_message
from nova_jobs.catalog import SUGGESTED_USERS, TRENDING_1H
from nova_jobs.lib.cache_checks import Findings, inspect_value
from nova_jobs.observability.health import health_report
from nova_jobs.lib.tags import PUBLISHED_TAG as DLQ_PUBLISHED_TAG
from nova_jobs.observability.jobs import JOB_INTERVALS
from nova_jobs.observability.server import Exporter
from nova_jobs.trending.assets import build_trending_asset
from nova_jobs.trending.windows import WINDOWS
from nova_jobs_dev.exporter_bench import empty_job
from nova_jobs_tests.conftest import insert_rows, stop_process_group

pytestmark = pytest.mark.integration

EVENT_COLUMNS = ["event_time", "post_id", "user_id", "event_type"]


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


class Served:
    def __init__(self, exporter: Exporter):
        self.exporter = exporter
        self.server = exporter.serve("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as reply:
            return reply.read().decode()

    def samples(self) -> dict[tuple, float]:
        out = {}
        for family in text_string_to_metric_families(self.text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.url}/health/jobs", timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(instance):
    served = Served(Exporter(instance, refresh_seconds=0))  # each scrape sees the runs just made
    yield served
    served.close()


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def run_job(instance, job_name, tags=None, **config):
    from nova_jobs.definitions import defs

    op = f"cache__{job_name}"
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        run_config={"ops": {op: {"config": config}}} if config else None,
        tags=tags,
        raise_on_error=False,
    )


@pytest.fixture
def three_trending_posts(clickhouse, redis_url):
    now = datetime.now(UTC).replace(microsecond=0)
    insert_rows(clickhouse, "post_events", EVENT_COLUMNS, [
        (now - timedelta(minutes=5), 1, 10, "like"),
        (now - timedelta(minutes=5), 2, 10, "share"),
        (now - timedelta(minutes=5), 3, 10, "view"),
    ])
    return clickhouse


def test_exporter_counts_real_runs_and_health_flips(three_trending_posts, instance, served):
    job = "trending_1h"
    before = served.samples()
    assert value(before, "job_runs_total", job_name=job, status="success") == 0
    assert served.health()[0] == 200  # nothing has run yet: within the startup grace

    ok = run_job(instance, job)
    assert ok.success
    after_success = served.samples()
    assert value(after_success, "job_runs_total", job_name=job, status="success") == 1
    assert value(after_success, "job_items_processed", job_name=job) == 3  # the run's own metadata
    assert value(after_success, "job_duration_seconds_count", job_name=job) == 1
    record = instance.get_run_record_by_id(ok.run_id)
    assert value(after_success, "job_last_success_timestamp", job_name=job) == pytest.approx(record.end_time)
    assert value(after_success, "job_duration_seconds_sum", job_name=job) == pytest.approx(record.end_time - record.start_time)
    assert value(after_success, "job_health", job_name=job) == 1

    failed = [run_job(instance, job, top_k=-1) for _ in range(3)]
    assert not any(result.success for result in failed)
    after_failures = served.samples()
    assert value(after_failures, "job_runs_total", job_name=job, status="failure") == 3
    assert value(after_failures, "job_consecutive_failures", job_name=job) == 3
    assert value(after_failures, "job_health", job_name=job) == 0
    assert value(after_failures, "job_items_processed", job_name=job) == 3  # from the last success
    status, body = served.health()
    assert status == 503
    assert body["unhealthy_jobs"] == [job]
    assert body["jobs"][job]["consecutive_failures"] == 3
    assert "3 consecutive failures" in body["jobs"][job]["reasons"][0]
    assert body["jobs"][job]["last_failure_run_id"] == failed[-1].run_id

    # The dead-letter sensor tags what it published; tagging updates the run, which must not
    # count it as finished twice.
    instance.add_run_tags(failed[-1].run_id, {DLQ_PUBLISHED_TAG: "true"})
    instance.add_run_tags(failed[-1].run_id, {"note": "seen"})
    after_dlq = served.samples()
    assert value(after_dlq, "job_dlq_messages_total", job_name=job) == 1
    assert value(after_dlq, "job_runs_total", job_name=job, status="failure") == 3

    assert run_job(instance, job).success
    recovered = served.samples()
    assert value(recovered, "job_consecutive_failures", job_name=job) == 0
    assert value(recovered, "job_runs_total", job_name=job, status="success") == 2
    assert served.health()[0] == 200
    counters = [k for k in recovered if k[0].endswith(("_total", "_count", "_bucket"))]
    assert all(recovered[k] >= after_dlq.get(k, 0) for k in counters), "counters only grow"

    # A restarted exporter reads the same history from the instance.
    restarted = Exporter(instance)
    restarted_samples = {}
    for family in text_string_to_metric_families(restarted.metrics().decode()):
        for sample in family.samples:
            restarted_samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    for key in counters:
        if key[0].startswith("job_"):
            assert restarted_samples[key] == recovered[key], key

    # Stale: the job's last success is older than twice its interval.
    last = recovered[("job_last_success_timestamp", (("job_name", job),))]
    status, body = health_report(restarted.ledger, now=last + 2 * JOB_INTERVALS[job] + 1)
    assert status == 503
    assert "last success" in body["jobs"][job]["reasons"][0]
    assert health_report(restarted.ledger, now=last + 2 * JOB_INTERVALS[job] - 1)[1]["jobs"][job]["healthy"]


def test_incremental_reads_are_bounded(instance):
    """After the first full read, a refresh reads only runs updated since (plus the overlap)."""
    for _ in range(30):
        instance.add_run(dg.DagsterRun(job_name="other_job", status=dg.DagsterRunStatus.SUCCESS))
    exporter = Exporter(instance, page_size=7, overlap_seconds=0)
    exporter.ledger.refresh()
    assert exporter.ledger.last_refresh_records == 30  # paged by 7
    assert exporter.ledger.jobs["other_job"].runs["success"] == 30
    exporter.ledger.refresh()
    # Storages that keep whole seconds re-read runs of the last second; never everything.
    assert exporter.ledger.last_refresh_records < 30
    assert exporter.ledger.jobs["other_job"].runs["success"] == 30


SLOW_JOB = '''
import time
import dagster as dg

@dg.op
def nap(context):
    context.log.info("napping")
    time.sleep(600)

@dg.job(tags={"dagster/max_runtime": "2"})
def slow_job():
    nap()

defs = dg.Definitions(jobs=[slow_job])
'''


def wait_for(predicate, timeout, what):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


@pytest.mark.slow
def test_killed_run_worker_is_counted_as_failed_and_dead_lettered_as_transient(tmp_path, monkeypatch):
    """A run whose worker is SIGKILLed stays STARTED until the daemon's run monitoring marks it
    failed (here through the job's max runtime); the exporter then counts it as a failure, and
    its DLQ message says transient, so it is replayed."""
    from nova_jobs_dev.localstack import default_signals

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_monitoring:\n  enabled: true\n  poll_interval_seconds: 1\n  start_timeout_seconds: 60\n"
        "telemetry:\n  enabled: false\n"
    )
    (tmp_path / "slow_job.py").write_text(SLOW_JOB)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    # Create the instance's sqlite storages here, before two processes race to create them.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    instance.get_run_records(limit=1)
    instance.fetch_materializations(dg.AssetKey("warm_up"), limit=1)
    instance.all_instigator_state()
    bin_dir = Path(os.sys.executable).parent
    worker = subprocess.Popen(
        [str(bin_dir / "dagster"), "job", "execute", "-f", str(tmp_path / "slow_job.py"), "-j", "slow_job"],
        env=env, cwd=tmp_path, stdout=(tmp_path / "worker.log").open("wb"), stderr=subprocess.STDOUT,
        preexec_fn=default_signals, start_new_session=True,
    )
    daemon = None
    try:
        started = wait_for(
            lambda: instance.get_run_records(dg.RunsFilter(job_name="slow_job", statuses=[dg.DagsterRunStatus.STARTED])),
            120, lambda: f"the slow run to start: {(tmp_path / 'worker.log').read_text()[-2000:]}",
        )
        run_id = started[0].dagster_run.run_id
        exporter = Exporter(instance)
        exporter.ledger.refresh()
        assert exporter.ledger.jobs["slow_job"].runs == {"success": 0, "failure": 0, "canceled": 0}

        os.killpg(worker.pid, 9)
        worker.wait(10)
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-f", str(tmp_path / "slow_job.py")],
            env=env, cwd=tmp_path, stdout=(tmp_path / "daemon.log").open("wb"), stderr=subprocess.STDOUT,
            preexec_fn=default_signals, start_new_session=True,
        )
        wait_for(
            lambda: instance.get_run_record_by_id(run_id).dagster_run.status == dg.DagsterRunStatus.FAILURE,
            120, lambda: f"run monitoring to mark the dead run failed: {(tmp_path / 'daemon.log').read_text()[-3000:]}",
        )
        exporter.ledger.refresh()
        stats = exporter.ledger.jobs["slow_job"]
        assert stats.runs["failure"] == 1
        assert stats.consecutive_failures == 1
        assert stats.last_failure_run_id == run_id
        assert stats.duration_count == 1
        message = build_message(instance, instance.get_run_by_id(run_id))
        assert message.kind == "transient"
        assert message.error_class.startswith("RunFailure.")
    finally:
        for process in (worker, daemon):
            if process is not None:
                stop_process_group(process)


def test_cache_checks_pass_on_a_real_refresh_and_fail_when_the_list_is_too_long(three_trending_posts, redis_resource, monkeypatch):
    # The checks are evaluated in the asset's own step, on the value it wrote.
    assets = [build_trending_asset(WINDOWS["1h"])]
    resources = {"clickhouse": three_trending_posts, "redis": redis_resource}
    result = dg.materialize(assets, resources=resources)
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("contents", True)
    assert evaluation.metadata["entries_checked"].value == 3
    assert all(evaluation.metadata[f"{aspect}_problems"].value == 0
               for aspect in ("json_valid", "ranked", "no_duplicates", "at_most_k"))

    # A run configured for 3 entries while the deployment's K is 2.
    monkeypatch.setenv("TRENDING_TOPK", "2")
    result = dg.materialize(assets, resources=resources, run_config={"ops": {"cache__trending_1h": {"config": {"top_k": 3}}}})
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.description.startswith("Failed at_most_k on 1 key(s), 3 entries")
    assert evaluation.metadata["at_most_k_problems"].value == 1
    assert evaluation.metadata["json_valid_problems"].value == 0 and evaluation.metadata["ranked_problems"].value == 0
    assert "3 entries, more than 2" in evaluation.metadata["at_most_k_examples"].value[0]


@pytest.mark.parametrize(
    ("raw", "failing"),
    [
        (None, "json_valid"),
        ("[{\"post_id\": 1, \"score\": 2.0}", "json_valid"),
        ('[{"post_id": "1", "score": 2.0}]', "json_valid"),
        ('[{"post_id": 1, "score": 1.0}, {"post_id": 2, "score": 2.0}]', "ranked"),
        ('[{"post_id": 2, "score": 1.0}, {"post_id": 1, "score": 1.0}]', "ranked"),
        ('[{"post_id": 1, "score": 2.0}, {"post_id": 1, "score": 1.0}]', "no_duplicates"),
        (json.dumps([{"post_id": i, "score": 100 - i} for i in range(51)]), "at_most_k"),
    ],
)
def test_each_cache_check_catches_its_problem(raw, failing):
    spec = TRENDING_1H
    findings = Findings()
    inspect_value(findings, spec.redis_key, raw, spec, max_items=50)
    assert {name for name, count in findings.counts.items() if count} == {failing}
    good = Findings()
    inspect_value(good, spec.redis_key, '[{"post_id": 1, "score": 2.0}, {"post_id": 2, "score": 2.0}]', spec, 50)
    assert not any(good.counts.values())


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([(5, 3, "mutual"), (9, 3, "mutual"), (2, 1, "mutual"), (8, 0, "popular"), (1, 0, "popular")], None),
        ([(5, 3, "mutual"), (8, 0, "popular"), (2, 1, "mutual")], "reasons out of order"),
        ([(9, 3, "mutual"), (5, 3, "mutual")], "ranked after"),
        ([(5, 3, "friend")], "unknown reason"),
    ],
)
def test_suggestion_lists_rank_mutual_friends_before_popular_fill(items, problem):
    spec = SUGGESTED_USERS
    findings = Findings()
    raw = json.dumps([{"user_id": u, "score": s, "reason": r} for u, s, r in items])
    inspect_value(findings, "nova:cache:suggested_users:1", raw, spec, max_items=20)
    if problem is None:
        assert not any(findings.counts.values()), findings.problems
    else:
        assert findings.counts["ranked"] == 1 and problem in findings.problems["ranked"][0]


def test_every_job_log_line_carries_the_correlation_id(three_trending_posts, tmp_path, project_root, capfd):
    """With the repo's dagster.yaml logging settings, every event and message of a run is
    written once more with the correlation id: the replay's kept id, else the run id."""
    import yaml

    python_logs = yaml.safe_load((project_root / "dagster.yaml").read_text())["python_logs"]
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"python_logs": python_logs}) as instance:
        capfd.readouterr()
        replay = run_job(instance, "trending_1h", tags={"nova/correlation_id": "first-run-0001"})
        plain = run_job(instance, "trending_1h", top_k=-1)
        assert replay.success and not plain.success
        lines = [line for line in capfd.readouterr().err.splitlines() if "[correlation_id=" in line]
        for result, cid in ((replay, "first-run-0001"), (plain, plain.run_id)):
            mine = [line for line in lines if f"[correlation_id={cid}]" in line]
            # Everything the run itself logs (the "planned" events are written before it starts).
            events = [
                entry for entry in instance.all_logs(result.run_id)
                if not (entry.dagster_event and entry.dagster_event.event_type_value.endswith("_PLANNED"))
            ]
            assert len(mine) >= len(events) > 5, (len(mine), len(events))
            for entry in events:
                text = entry.dagster_event.message if entry.dagster_event else entry.user_message
                if text:
                    first_line = text.splitlines()[0]
                    assert any(first_line in line for line in mine), first_line
        assert any("trending 1h:" in line for line in lines if "first-run-0001" in line)
        failed_lines = [line for line in lines if plain.run_id in line]
        assert any("STEP_FAILURE" in line and "top_k=-1" in line for line in failed_lines)
        assert any("PIPELINE_FAILURE" in line for line in failed_lines)


# Dashboard and alert rules against what the exporter serves.

PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "irate", "histogram_quantile", "max", "min", "avg",
    "count", "time", "vector", "or", "and", "unless", "on", "ignoring", "group_left", "group_right",
    "label_values", "abs", "clamp_min", "clamp_max", "delta", "deriv", "offset", "bool", "topk",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", expr)  # Grafana: label_values(metric, label)
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\$\w+", "", expr)  # dashboard variables
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"[smhdw]|e\d*", t)}


@pytest.fixture
def served_names(three_trending_posts, instance, served) -> set[str]:
    assert run_job(instance, "trending_1h").success
    assert not run_job(instance, "trending_1h", top_k=-1).success
    names = set()
    for family in text_string_to_metric_families(served.text()):
        names |= {sample.name for sample in family.samples}
        # Declared with no series on this instance (no sensor has ticked here; tests of their
        # values: test_dlq_watch.py).
        if not family.samples and family.name.startswith(("nova_sensor_", "nova_dlq_")):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_dashboard_queries_only_served_metrics(project_root, served_names):
    dashboard = json.loads((project_root / "deploy/grafana/nova-jobs.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in ("Success rate", "p95 duration", "Consecutive failures", "DLQ", "Unhealthy jobs", "freshness",
                   "unpublished dead runs", "DLQ sensors", "parked"):
        assert any(wanted.lower() in title.lower() for title in titles), wanted
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(queries) >= 10
    for expr in queries:
        used = metric_names(expr)
        assert used, expr
        assert used <= served_names, f"{expr}: {used - served_names} not served"


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            "apt-get install -y --no-install-recommends prometheus || "
            "(apt-get update && apt-get install -y --no-install-recommends prometheus)",
            shell=True, capture_output=True, timeout=600,
        )
        found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool cannot be installed here (Debian package `prometheus`; .ci/run installs it)")
    return found


def test_alert_rules_pass_promtool_and_use_served_metrics(project_root, promtool, served_names):
    rules = project_root / "helm/nova-jobs/files/alerts.yml"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=rules.parent, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr

    import yaml

    groups = yaml.safe_load(rules.read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    assert {"NovaJobUnhealthy", "NovaJobConsecutiveFailures", "NovaJobsDeadLetters", "NovaCacheStale", "NovaJobSlow"} <= alerts
    assert {"NovaDlqSensorFailing", "NovaDlqUnpublishedBacklog", "NovaDlqParkedMessages"} <= alerts
    tested_alerts = {t["alertname"] for group in yaml.safe_load((rules.parent / "alerts_test.yml").read_text())["tests"]
                     for t in group.get("alert_rule_test", [])}
    assert {"NovaDlqSensorFailing", "NovaDlqUnpublishedBacklog", "NovaDlqParkedMessages"} <= tested_alerts
    runbook = (project_root / "docs/RUNBOOK.md").read_text()
    for group in groups:
        for rule in group["rules"]:
            anchor = rule.get("annotations", {}).get("runbook_url", "#").split("#", 1)[1]
            if rule.get("alert", "").startswith("NovaDlq"):
                assert f"\n## {anchor.replace('-', ' ')}" in runbook.lower().replace("-", " "), f"RUNBOOK has no section {anchor}"
    for group in groups:
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            assert used <= served_names | recorded, f"{rule['expr']}: {used - served_names - recorded} not served"


def test_scrape_passes_promtool_check_metrics(promtool, served, served_names):
    checked = subprocess.run([promtool, "check", "metrics"], input=served.text(), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_cli_serves_metrics_and_health_from_dagster_home(tmp_path):
    """`nova-jobs exporter` as `make dev` starts it: reads DAGSTER_HOME, stops on SIGTERM."""
    from nova_jobs_dev.localstack import ManagedProcess, free_port

    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_run(dg.DagsterRun(job_name="trending_7d", status=dg.DagsterRunStatus.FAILURE))
    port = free_port()
    exporter = ManagedProcess(
        "exporter",
        [os.sys.executable, "-m", "nova_jobs.cli", "exporter", "--host", "127.0.0.1", "--port", str(port)],
        port, log_path=tmp_path / "exporter.log", env={"DAGSTER_HOME": str(home)},
    )
    with exporter:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            text = reply.read().decode()
        assert 'job_runs_total{job_name="trending_7d",status="failure"} 1.0' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/jobs", timeout=30) as reply:
            body = json.loads(reply.read())
        assert reply.status == 200 and body["jobs"]["trending_7d"]["consecutive_failures"] == 1
    assert exporter.process.returncode is not None


# The exporter holds: slow clients, request floods and broken reads.
def test_half_sent_requests_cost_no_thread_and_are_closed_by_the_read_timeout(instance):
    served = Served(Exporter(instance))
    port = served.server.server_address[1]
    held = []
    try:
        before = threading.active_count()
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n")  # never the blank line
            held.append(sock)
        # Accepted after the 200, answered while they are all still open.
        status, body = served.health()
        assert status in (200, 503) and set(body["jobs"]) >= set(JOB_INTERVALS)
        assert threading.active_count() - before <= 3  # the answer pool, not a thread each

        # Each is closed by the server once its read timeout (5 s by default) is over.
        deadline = time.monotonic() + 40
        closed = 0
        for sock in held:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                closed += sock.recv(1024) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == 200
        assert served.server.timed_out == 200 and served.server.open_connections == 0
    finally:
        for sock in held:
            sock.close()
        served.close()


def test_a_flood_of_requests_reads_the_instance_at_most_once_per_interval(instance):
    trending_1h = empty_job("trending_1h")
    for _ in range(3):
        assert trending_1h.execute_in_process(instance=instance).success
    served = Served(Exporter(instance))  # the default interval: 5 s
    try:
        served.text()
        ledger = served.exporter.ledger
        first = ledger.records_read
        assert first == 3

        def ask(paths):
            for path in paths:
                try:
                    urllib.request.urlopen(f"{served.url}{path}", timeout=30).read()
                except urllib.error.HTTPError as error:
                    assert error.code == 503  # an unhealthy job, still an answer

        askers = [threading.Thread(target=ask, args=(["/metrics", "/health/jobs"] * 5,)) for _ in range(5)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
        # Every read of the instance re-reads the 3 recent runs (the overlap), so the records
        # read count the reads: the 50 requests made at most a couple.
        assert (ledger.records_read - first) // 3 <= 2
        assert served.exporter.shared.instance_reads <= 3
    finally:
        served.close()


def test_a_failed_read_answers_without_the_exception_text(tmp_path, caplog):
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    served = Served(Exporter(instance))
    try:
        (tmp_path / "history" / "runs.db").unlink()  # the run storage is gone
        with caplog.at_level("ERROR"):
            status, body = served.health()
        assert status == 503 and body["healthy"] is False
        text = json.dumps(body)
        assert "runs" not in text and "Error" not in text and "sqlite" not in text.lower()
        # The reason is in the exporter's log.
        assert any("NoSuchTableError" in record.getMessage() for record in caplog.records)
    finally:
        served.close()
