"""`make bench` at a tiny scale, in its own process and store: every job of the two data shapes
is run as scheduled, its plain formulation agrees with what it wrote (the bench refuses to print
a figure otherwise), the limits come out with their parts, and the output is saved; the
run-start section times runs a real daemon launches, next to the floor."""

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.integration

JOBS = ["trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer (200)"]


def test_bench_runs_every_job_of_both_shapes_against_its_plain_formulation(tmp_path, project_root):
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nova_jobs_dev.bench", "--only", "import,jobs", "--users", "1500", "--feed-users", "200", "--repeat", "1",
         "--caps-sample", "2", "--import-samples", "1", "--workdir", str(tmp_path / "work"), "--results", str(results)],
        cwd=project_root, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [saved] = results.glob("bench-1500-*.json")
    report = json.loads(saved.read_text())
    rows = [(row["shape"], row["job"]) for row in report["jobs"]]
    assert rows == [(shape, job) for shape in ("demo", "heavy") for job in JOBS]
    for row in report["jobs"]:
        assert row["job_s"] > row["step_s"] > 0, row
        assert row["plain_s"] > 0 and row["floor_s"] > 0, row
        assert row["limit_s"] == pytest.approx(row["plain_s"] + row["bare_redis_s"] + row["floor_s"])
        assert row["vs_limit"] == pytest.approx(row["job_s"] / row["limit_s"])
    by_job = {(row["shape"], row["job"]): row for row in report["jobs"]}
    assert by_job["demo", "cache_warmer (200)"]["keys"] == 200
    assert by_job["heavy", "trending_1h"]["keys"] == 2
    assert 500 < by_job["demo", "suggested_users"]["keys"] <= 1500
    caps = {row["caps (followees/per followee)"]: row for row in report["caps"]}
    assert list(caps) == ["1000/1000", "200/200", "50/50", "none"]
    assert caps["none"]["recall@20"] == caps["none"]["identical_lists"] == 1.0
    assert caps["1000/1000"]["identical_lists"] == 1.0
    assert "vs_limit" in (results / saved.name.replace(".json", ".txt")).read_text()
    # The import section: what a run process pays to load the code location, beside Dagster.
    imports = report["import"]
    assert imports["samples"] == 1
    assert set(imports["median_seconds"]) == {"dagster", "nova_jobs.definitions"}
    # One sample: the median of the pairs' differences is that pair's difference.
    assert imports["added_seconds"] == pytest.approx(
        imports["median_seconds"]["nova_jobs.definitions"] - imports["median_seconds"]["dagster"])
    added = dict(imports["heaviest_added_modules"])
    assert "nova_jobs" in added and not {"kafka", "redis", "clickhouse_connect", "chdb"} & set(added), added
    assert "import nova_jobs.definitions" in (results / saved.name.replace(".json", ".txt")).read_text()


def test_the_heavy_shape_has_a_heavier_tailed_out_degree(clickhouse):
    from datetime import UTC, datetime

    from nova_jobs_dev.demo.generate import SHAPES, generate_demo

    database = clickhouse.database_name
    degrees = {}
    with clickhouse.get_client() as client:
        for shape in ("demo", "heavy"):
            for table in ("follows", "user_blocks", "posts", "post_events"):
                client.command(f"TRUNCATE TABLE {database}.{table}")
            generate_demo(client, database, size=SHAPES[shape](5000), seed=3, now=datetime(2026, 11, 29, tzinfo=UTC))
            degrees[shape] = client.query(
                f"SELECT quantileExact(0.999)(n), max(n) FROM (SELECT count() AS n FROM {database}.follows GROUP BY follower_id)"
            ).result_rows[0]
            degrees[shape + "_top"] = client.query(
                f"SELECT max(n) FROM (SELECT count() AS n FROM {database}.follows GROUP BY followee_id)"
            ).result_rows[0][0]
    assert degrees["heavy"][0] > 1.5 * degrees["demo"][0]  # the 99.9th percentile of who-follows-how-many
    assert degrees["heavy"][1] >= 300  # some follow hundreds
    assert degrees["heavy_top"] > degrees["demo_top"]  # very popular accounts


@pytest.mark.slow
def test_run_start_section_times_daemon_launched_runs_next_to_the_floor(tmp_path, project_root):
    """`--only run-start` at a tiny scale: every run went through the queue, the daemon and a
    fresh process, and its parts add up to its total."""
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nova_jobs_dev.bench", "--only", "run-start", "--users", "1500", "--shapes", "demo",
         "--run-start-runs", "1", "--workdir", str(tmp_path / "work"), "--results", str(results)],
        cwd=project_root, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [saved] = results.glob("bench-1500-*.json")
    report = json.loads(saved.read_text())
    assert report["jobs"] == [] and report["import"] is None
    [section] = report["run_start"]
    assert section["shape"] == "demo"
    interval = section["dequeue_interval_s"]
    # The instance is the repo's dagster.yaml as it is: its queue is read every second.
    configured = yaml.safe_load((project_root / "dagster.yaml").read_text())["run_coordinator"]["config"]
    assert interval == configured["dequeue_interval_seconds"] == 1
    cache_jobs = ["trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer"]
    assert [row["job"] for row in section["rows"]] == ["floor (one asset, does nothing)", *cache_jobs]
    runs = section["all_runs"]
    assert set(runs) == {"nothing", *cache_jobs}
    for job, measured in runs.items():
        [run] = measured
        assert all(value >= 0 for value in run.values()), (job, run)
        assert run["queue_s"] + run["start_s"] + run["steps_s"] + run["around_s"] == pytest.approx(run["total_s"])
        assert run["spawn_s"] + run["load_s"] == pytest.approx(run["start_s"])
        assert run["run_s"] == pytest.approx(run["total_s"] - run["queue_s"])
        # Dequeued at the daemon's next pass; a fresh interpreter importing Dagster takes a while.
        assert run["queue_s"] < interval + 15, (job, run)
        assert run["start_s"] > 0.3 and run["steps_s"] > 0, (job, run)
    # A job's first (and only) step in its process imports and opens the clients; the floor's does nothing.
    assert runs["nothing"][0]["steps_s"] < min(runs[job][0]["steps_s"] for job in cache_jobs)
    for row in section["rows"]:
        assert row["run_min_s"] <= row["run_s"] <= row["run_max_s"]
    assert section["queue_all_s"]["runs"] == 6
    assert section["rows"][0]["run_vs_floor"] == 1.0
    # The second limit: each job's plain formulation in a fresh process, right after its run,
    # paying its clients' imports and opening; it wrote what its job writes.
    plain = section["plain_fresh_runs"]
    assert set(plain) == set(cache_jobs)
    for job, [fresh] in plain.items():
        assert fresh["imports_s"] > 0 and fresh["open_s"] > 0 and fresh["query_s"] > 0, (job, fresh)
        assert fresh["plain_fresh_s"] >= fresh["imports_s"] + fresh["open_s"] + fresh["query_s"]
    assert all(plain[job][0]["keys"] == 2 for job in cache_jobs[:3])
    assert 0 < plain["cache_warmer"][0]["keys"] <= 1000 and 500 < plain["suggested_users"][0]["keys"] <= 1500
    floor_run = section["rows"][0]["run_s"]
    for row in section["rows"]:
        fresh = plain[row["job"]][0]["plain_fresh_s"] if row["job"] in plain else 0.0
        # One round: the per-round medians are that round's figures.
        assert row["limit_fresh_s"] == pytest.approx(floor_run + fresh)
        assert row["run_vs_limit_fresh"] == pytest.approx(row["run_s"] / row["limit_fresh_s"])
    text = (results / saved.name.replace(".json", ".txt")).read_text()
    assert "Whole run as a schedule runs it" in text and "trending_1h" in text and "limit_fresh" in text


def test_run_start_jobs_are_named_cache_jobs_in_the_catalogs_order():
    import argparse

    from nova_jobs_dev.plain_fresh import JOBS as PLAIN_FRESH_JOBS
    from nova_jobs_dev.run_start_bench import SCHEDULED_JOBS, job_list

    assert SCHEDULED_JOBS == ("trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer")
    assert set(PLAIN_FRESH_JOBS) == set(SCHEDULED_JOBS)  # each has its plain formulation to run fresh
    assert job_list("cache_warmer, trending_1h") == ("trending_1h", "cache_warmer")
    for bad in ("trending_2h", "", "trending_history"):
        with pytest.raises(argparse.ArgumentTypeError, match="known: trending_1h"):
            job_list(bad)


def test_run_timings_refuses_a_run_that_no_daemon_launched():
    """An in-process run has no dequeue and no process of its own: there is nothing to split."""
    import dagster as dg

    from nova_jobs_dev.run_start_bench import defs, run_timings

    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("nothing").execute_in_process(instance=instance)
        with pytest.raises(RuntimeError, match="lacks a mark"):
            run_timings(instance, result.run_id)


def test_only_takes_one_section_or_several():
    import argparse

    from nova_jobs_dev.bench import sections

    assert sections("import") == ["import"]
    assert sections("jobs, run-start") == ["jobs", "run-start"]
    with pytest.raises(argparse.ArgumentTypeError, match="runstart"):
        sections("import,runstart")


def test_jobs_takes_a_subset_of_the_benched_jobs(capsys):
    """`make bench --jobs` reads the names as the run-start section does (one parser, catalog order)."""
    from nova_jobs_dev.bench import main
    from nova_jobs_dev.run_start_bench import job_list

    assert job_list("trending_1h, cache_warmer") == ("trending_1h", "cache_warmer")
    with pytest.raises(SystemExit) as exited:
        main(["--jobs", "trending_1h,trending_2h"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "trending_2h" in error and "known: trending_1h, trending_24h, trending_7d, suggested_users, cache_warmer" in error
