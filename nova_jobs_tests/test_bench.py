"""`make bench` at a tiny scale, in its own process and store: the five contract jobs, their
limits and the caps study come out, and the output is saved."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_bench_runs_every_job_and_the_caps_study(tmp_path, project_root):
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nova_jobs.bench", "--users", "3000", "--feed-users", "300",
         "--suggestion-shards", "2", "--caps-sample", "2",
         "--workdir", str(tmp_path / "work"), "--results", str(results)],
        cwd=project_root, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [saved] = results.glob("bench-3000-*.json")
    report = json.loads(saved.read_text())
    jobs = {row["job"]: row for row in report["jobs"]}
    assert list(jobs) == ["trending_1h", "trending_24h", "trending_7d", "suggested_users", "cache_warmer (300)"]
    assert jobs["cache_warmer (300)"]["users"] == 300
    # Every active user of both shards got a list (the demo makes most of the 3000 active).
    assert 1000 < jobs["suggested_users"]["users"] <= 3000
    for row in jobs.values():
        assert row["total_s"] > 0 and row["bare_query_s"] > 0 and row["peak_rss_mb"] > 0
    caps = {row["caps (followees/per followee)"]: row for row in report["caps"]}
    assert list(caps) == ["1000/1000", "200/200", "50/50", "none"]
    assert caps["none"]["recall@20"] == caps["none"]["identical_lists"] == 1.0
    # A small graph stays under the default caps: exact lists.
    assert caps["1000/1000"]["identical_lists"] == 1.0
    assert all(0.0 < row["recall@20"] <= 1.0 for row in caps.values())
    assert "suggested_users" in (results / saved.name.replace(".json", ".txt")).read_text()
