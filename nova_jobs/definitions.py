"""The Nova Jobs code location: every domain's definitions, with the shared resources and the
executor chosen for the deployment. Nothing here opens a connection."""

import dagster as dg

from nova_jobs import feeds, observability, suggestions, trending
from nova_jobs.deadletter import with_dead_letter_queue
from nova_jobs.executors import executor_for_deployment
from nova_jobs.resources import resources_from_env

defs = dg.Definitions.merge(
    trending.defs,
    observability.defs,
    suggestions.defs,
    feeds.defs,
    dg.Definitions(resources=resources_from_env(), executor=executor_for_deployment()),
)

# The dead-letter sensors: the replay sensor can launch any job above, so it is built from them.
defs = with_dead_letter_queue(defs)
