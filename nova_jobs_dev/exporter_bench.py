"""How fast the exporter scrapes an instance holding many runs (not a test: it prints figures).

    python -m nova_jobs_dev.exporter_bench --runs 100000

Seeds a temporary sqlite instance with finished runs of the five jobs (about 2 % failed, some
tagged as published to the DLQ), then times: the exporter's first (full) read, a scrape with
nothing new, and a scrape after 50 more runs finished. Seeding writes rows in bulk through the
run storage's tables, since adding 100,000 runs one `add_run` at a time takes minutes; the
exporter itself reads only through the public instance API.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg

from nova_jobs.lib.tags import PUBLISHED_TAG as DLQ_PUBLISHED_TAG
from nova_jobs.observability.jobs import JOB_INTERVALS
from nova_jobs.observability.server import Exporter


@dg.op
def step() -> None:
    """Nothing: the runs only have to exist and finish."""


def empty_job(name: str, partitions_def: dg.PartitionsDefinition | None = None) -> dg.JobDefinition:
    """A job of one op that does nothing, named `name`: runs that only have to exist and finish
    (here, and for the tests' sensors and exporter)."""

    @dg.job(name=name, partitions_def=partitions_def)
    def job() -> None:
        step()

    return job


def seed(instance: dg.DagsterInstance, runs: int, end: datetime, rng: random.Random) -> None:
    from dagster._core.storage.runs.schema import RunsTable, RunTagsTable  # bulk seeding only

    jobs = list(JOB_INTERVALS)
    rows, tags = [], []
    for index in range(runs):
        job = jobs[index % len(jobs)]
        finished = end - timedelta(seconds=(runs - index) * 2)
        duration = rng.lognormvariate(-1.0, 1.0)
        failed = rng.random() < 0.02
        status = dg.DagsterRunStatus.FAILURE if failed else dg.DagsterRunStatus.SUCCESS
        run_id = str(uuid.uuid4())
        run_tags = {"nova/job": job}
        if failed and rng.random() < 0.5:
            run_tags[DLQ_PUBLISHED_TAG] = "true"
        run = dg.DagsterRun(job_name=job, run_id=run_id, status=status, tags=run_tags)
        naive_end = finished.replace(tzinfo=None)
        rows.append({
            "run_id": run_id, "pipeline_name": job, "status": status.value, "run_body": dg.serialize_value(run),
            "create_timestamp": naive_end - timedelta(seconds=duration + 0.5), "update_timestamp": naive_end,
            "start_time": finished.timestamp() - duration, "end_time": finished.timestamp(),
        })
        tags += [{"run_id": run_id, "key": key, "value": value} for key, value in run_tags.items()]
    with instance.run_storage.connect() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(RunsTable.insert(), rows[start : start + 5000])
        for start in range(0, len(tags), 5000):
            conn.execute(RunTagsTable.insert(), tags[start : start + 5000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args(argv)
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as home:
        instance = dg.DagsterInstance.local_temp(home)
        began = time.perf_counter()
        seed(instance, args.runs, datetime.now(UTC) - timedelta(minutes=10), rng)
        print(f"seeded {args.runs} runs in {time.perf_counter() - began:.1f} s")

        exporter = Exporter(instance, refresh_seconds=0)  # every scrape reads, to time the read
        began = time.perf_counter()
        first = exporter.metrics()
        print(f"first scrape (full read of {exporter.ledger.records_read} runs): {time.perf_counter() - began:.2f} s, {len(first)} bytes")

        timings = []
        for _ in range(5):
            began = time.perf_counter()
            exporter.metrics()
            timings.append(time.perf_counter() - began)
        print(f"scrape, nothing new: median {sorted(timings)[2] * 1000:.1f} ms ({exporter.ledger.last_refresh_records} runs re-read in the overlap)")

        trending_1h = empty_job("trending_1h")
        for _ in range(50):
            trending_1h.execute_in_process(instance=instance)
        began = time.perf_counter()
        exporter.metrics()
        print(f"scrape after 50 new runs: {(time.perf_counter() - began) * 1000:.1f} ms ({exporter.ledger.last_refresh_records} runs read)")
        total = sum(stats.runs["success"] + stats.runs["failure"] for stats in exporter.ledger.jobs.values())
        print(f"runs counted: {total} (expected {args.runs + 50})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
