"""The Nova Jobs code location: every domain's definitions and the warehouse tables they read,
with the shared resources, the executor chosen for the deployment and each cache's freshness
policy. Nothing here opens a connection."""

import dagster as dg

from nova_jobs import feeds, observability, suggestions, trending
from nova_jobs.deadletter import with_dead_letter_queue
from nova_jobs.executors import executor_for_deployment
from nova_jobs.observability.freshness import with_freshness_policies
from nova_jobs.resources import resources_from_env
from nova_jobs.warehouse.tables import warehouse_tables


def build_definitions() -> dg.Definitions:
    domains = dg.Definitions.merge(trending.defs, observability.defs, suggestions.defs, feeds.defs)
    location = dg.Definitions(
        assets=[*with_freshness_policies(domains.assets or []), *warehouse_tables],
        asset_checks=domains.asset_checks,
        jobs=domains.jobs,
        schedules=domains.schedules,
        sensors=domains.sensors,
        loggers=domains.loggers,
        resources=resources_from_env(),
        executor=executor_for_deployment(),
    )
    # The dead-letter sensors: the replay sensor can launch any job above, so it is built from them.
    return with_dead_letter_queue(location)


defs = build_definitions()
