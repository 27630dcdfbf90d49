"""Dead-letter settings, read when a sensor ticks (never at import)."""

from nova_jobs.lib.settings import setting_int, setting_str


def replay_cooldown_seconds() -> int:
    """How long after a transient failure its replay waits (let the outage pass)."""
    return setting_int("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", default=300, minimum=0)


def max_replays() -> int:
    """Automatic replays per correlation id; after that the failure waits for an operator."""
    return setting_int("NOVA_DLQ_MAX_REPLAYS", default=3, minimum=0)


def max_age_hours() -> int:
    """DLQ messages older than this are not replayed automatically (stale work)."""
    return setting_int("NOVA_DLQ_MAX_AGE_HOURS", default=24, minimum=1)


def lookback_hours() -> int:
    """How far back the failure sensor looks for failed runs not yet published."""
    return setting_int("NOVA_DLQ_LOOKBACK_HOURS", default=72, minimum=1)


def retry_grace_seconds() -> int:
    """How long a failed run may lack `dagster/will_retry` before it counts as dead (the tag
    is added just after the failure when run retries are on)."""
    return setting_int("NOVA_DLQ_RETRY_GRACE_SECONDS", default=30, minimum=0)


def retry_wait_seconds() -> int:
    """How long a run tagged `dagster/will_retry=true` may wait for its re-execution to appear
    before it counts as dead (the retry daemon may be down)."""
    return setting_int("NOVA_DLQ_RETRY_WAIT_SECONDS", default=600, minimum=0)


def page_size() -> int:
    """Runs the failure sensor looks at, and dead runs it publishes, per tick."""
    return setting_int("NOVA_DLQ_PAGE_SIZE", default=200, minimum=1)


def max_replays_per_tick() -> int:
    """Automatic replays the replay sensor requests per tick (the rest wait for the next tick),
    so an outage's backlog does not queue ahead of the schedules."""
    return setting_int("NOVA_DLQ_MAX_REPLAYS_PER_TICK", default=10, minimum=1)


def max_waiting() -> int:
    """Messages the replay sensor keeps waiting in its cursor; beyond that it stops reading the
    topic's partition (nothing is dropped) until some have been replayed or superseded."""
    return setting_int("NOVA_DLQ_MAX_WAITING", default=1000, minimum=1)


def retention_days() -> int:
    """Retention (`retention.ms`) of the DLQ topics when Nova creates them."""
    return setting_int("NOVA_DLQ_RETENTION_DAYS", default=14, minimum=1)


def topic_partitions() -> int:
    """Partitions of the DLQ topics when Nova creates them."""
    return setting_int("NOVA_DLQ_TOPIC_PARTITIONS", default=3, minimum=1)


def topic_replication() -> int:
    """Replication factor of the DLQ topics when Nova creates them."""
    return setting_int("NOVA_DLQ_TOPIC_REPLICATION", default=1, minimum=1)


def max_tracked() -> int:
    """Parked messages the replay sensor lists one by one (the UI table, `dlq list`); beyond
    that they are counted per job, and `nova_dlq_tracked_messages` reaching the cap alerts."""
    return setting_int("NOVA_DLQ_MAX_TRACKED", default=5000, minimum=1)


def operator_replays_per_tick() -> int:
    """Operator-requested replays released per tick, oldest first (the redrive rate: with the
    sensor's 15 s interval, the default is at most 80 a minute)."""
    return setting_int("NOVA_DLQ_REDRIVE_PER_TICK", default=20, minimum=1)


def ui_base_url() -> str:
    """Where the Dagster UI is served, for the failed-run links of the DLQ table."""
    return setting_str("NOVA_DAGSTER_UI_URL", default="http://localhost:3000").rstrip("/")
