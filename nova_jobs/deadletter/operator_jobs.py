"""The operator's DLQ actions as jobs in the Dagster launchpad: `dlq_replay` and `dlq_discard`.

Each publishes requests on `jobs-dlq-replay` (the same code as `nova-jobs dlq replay/discard`)
and the replay sensor carries them out on its next tick. The run log is the audit trail: what
was asked, for which messages, by whom (the `dagster/user` tag where the deployment records
users). Request ids come from the selector and the message, and the sensor acts once per
message and action, so launching the same thing twice acts once."""

import dagster as dg
from pydantic import Field

from nova_jobs.deadletter.cli import (
    SelectionError,
    load_entries,
    operator_requests,
    publish_requests,
    select_entries,
)
from nova_jobs.deadletter.replay_sensor import DISCARD, REPLAY
from nova_jobs.deadletter.topics import ensure_topics_once
from nova_jobs.lib.tags import MAX_RUNTIME_TAG, OPERATOR_ACTION_TAG, USER_TAG
from nova_jobs.resources.kafka import KafkaResource

OPERATOR_MAX_RUNTIME_SECONDS = 300


class DlqSelection(dg.Config):
    correlation_id: str = Field(default="", description="The latest failure of this correlation id (the failed run's id)")
    correlation_ids: list[str] = Field(default=[], description="Several correlation ids at once")
    job_name: str = Field(default="", description="With all_parked: the job whose parked (and expired) messages to take")
    all_parked: bool = Field(default=False, description="Every parked message of job_name")

    def ids(self) -> list[str]:
        return [c.strip() for c in [self.correlation_id, *self.correlation_ids] if c.strip()]

    def selector(self) -> str:
        return ",".join(self.ids()) if self.ids() else f"job={self.job_name} all_parked"


class DlqDiscardSelection(DlqSelection):
    reason: str = Field(description="Why these failures are dropped for good (kept with the decision)")


def _request(context: dg.OpExecutionContext, kafka: KafkaResource, config: DlqSelection, action: str,
             reason: str = "") -> int:
    problem = ensure_topics_once(kafka)
    if problem:
        context.log.warning(problem)
    try:
        chosen = select_entries(load_entries(kafka), config.ids(), config.job_name.strip(), config.all_parked)
    except SelectionError as error:
        raise dg.Failure(f"nothing to {action}: {error}") from None
    who = context.run.tags.get(USER_TAG) or f"dagster run {context.run_id}"
    requests = operator_requests(chosen, action, config.selector(), who, reason)
    publish_requests(kafka, requests)
    for request in requests:
        m = request["message"]
        context.log.info(f"{action} requested by {who}: {m['job_name']} run {m['run_id']} "
                         f"(correlation {m['correlation_id']}, request {request['request_id']})"
                         + (f": {reason}" if reason else ""))
    if not requests:
        context.log.info(f"nothing to {action}: no parked message of {config.job_name}")
    return len(requests)


@dg.op(description="Ask the replay sensor to replay the selected DLQ messages (oldest first, at the redrive rate).")
def request_dlq_replay(context: dg.OpExecutionContext, config: DlqSelection, kafka: KafkaResource) -> int:
    return _request(context, kafka, config, REPLAY)


@dg.op(description="Ask the replay sensor to discard the selected DLQ messages for good.")
def request_dlq_discard(context: dg.OpExecutionContext, config: DlqDiscardSelection, kafka: KafkaResource) -> int:
    reason = config.reason.strip()
    if not reason:
        raise dg.Failure("a discard needs a reason")
    return _request(context, kafka, config, DISCARD, reason)


def operator_tags(action: str) -> dict[str, str]:
    # No warehouse or job limit: a request only publishes to Kafka, and asking twice acts once.
    # A run stuck on an unreachable broker is still failed by run monitoring.
    return {OPERATOR_ACTION_TAG: action, MAX_RUNTIME_TAG: str(OPERATOR_MAX_RUNTIME_SECONDS)}


@dg.job(name="dlq_replay", description="Replay DLQ messages: a correlation id, a list of them, or a job's parked ones.",
        tags=operator_tags("dlq_replay"))
def dlq_replay_job() -> None:
    request_dlq_replay()


@dg.job(name="dlq_discard", description="Discard DLQ messages for good, with a reason.",
        tags=operator_tags("dlq_discard"))
def dlq_discard_job() -> None:
    request_dlq_discard()
