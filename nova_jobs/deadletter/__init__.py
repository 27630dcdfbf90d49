"""Dead-letter queue: failed-for-good runs go to Kafka topic `jobs-dlq`, and come back as replays.

The replay sensor launches runs of any job in the code location, so its definitions are built
from the merged definitions of every domain: `defs = with_dead_letter_queue(defs)`.
"""

import dagster as dg

from nova_jobs.deadletter.failure_sensor import dlq_failure_sensor
from nova_jobs.deadletter.observe import dlq_asset
from nova_jobs.deadletter.operator_jobs import dlq_discard_job, dlq_replay_job
from nova_jobs.deadletter.replay_sensor import build_replay_sensor


def dead_letter_defs(jobs: list) -> dg.Definitions:
    """Both sensors (the replay sensor launching `jobs`), the DLQ as an observed asset, and the
    operator's replay and discard jobs (never replay targets themselves)."""
    return dg.Definitions(assets=[dlq_asset], jobs=[dlq_replay_job, dlq_discard_job],
                          sensors=[dlq_failure_sensor, build_replay_sensor(jobs)])


def with_dead_letter_queue(defs: dg.Definitions) -> dg.Definitions:
    """`defs` plus both DLQ sensors, the replay sensor targeting every job in `defs`."""
    return dg.Definitions.merge(defs, dead_letter_defs(list(defs.jobs or [])))
