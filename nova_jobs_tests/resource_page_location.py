"""A code location of the project's resources alone, loaded by test_resources.py in a code
server of its own, as the UI loads one: its environment at load time decides what they show."""

import dagster as dg

from nova_jobs.resources import resources_from_env


@dg.op
def uses_every_resource(clickhouse, redis, kafka) -> None:
    """Only so the resources are part of a job."""


@dg.job
def resource_page_job():
    uses_every_resource()


defs = dg.Definitions(jobs=[resource_page_job], resources=resources_from_env())
