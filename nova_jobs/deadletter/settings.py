"""Dead-letter settings, read when a sensor ticks (never at import).

Each whole-number setting is one row below: the getter's name, the environment variable it
reads, its default and its minimum (a smaller value is a SettingError naming the variable), then
what it means. Calling a getter (`settings.max_replays()`) reads its variable at that moment.
"""

from dataclasses import dataclass

from nova_jobs.lib.settings import setting_int, setting_str


@dataclass(frozen=True)
class IntSetting:
    """A whole-number setting: called, it reads `variable` from the environment, else `default`;
    a value below `minimum` is a SettingError."""

    variable: str
    default: int
    minimum: int

    def __call__(self) -> int:
        return setting_int(self.variable, default=self.default, minimum=self.minimum)


replay_cooldown_seconds = IntSetting("NOVA_DLQ_REPLAY_COOLDOWN_SECONDS", default=300, minimum=0)
"""How long after a transient failure its replay waits (let the outage pass)."""

max_replays = IntSetting("NOVA_DLQ_MAX_REPLAYS", default=3, minimum=0)
"""Automatic replays per correlation id; after that the failure waits for an operator."""

max_age_hours = IntSetting("NOVA_DLQ_MAX_AGE_HOURS", default=24, minimum=1)
"""DLQ messages older than this are not replayed automatically (stale work)."""

lookback_hours = IntSetting("NOVA_DLQ_LOOKBACK_HOURS", default=72, minimum=1)
"""How far back the failure sensor looks for failed runs not yet published."""

retry_grace_seconds = IntSetting("NOVA_DLQ_RETRY_GRACE_SECONDS", default=30, minimum=0)
"""How long a failed run may lack `dagster/will_retry` before it counts as dead (the tag is added
just after the failure when run retries are on)."""

retry_wait_seconds = IntSetting("NOVA_DLQ_RETRY_WAIT_SECONDS", default=600, minimum=0)
"""How long a run tagged `dagster/will_retry=true` may wait for its re-execution to appear before
it counts as dead (the retry daemon may be down)."""

page_size = IntSetting("NOVA_DLQ_PAGE_SIZE", default=200, minimum=1)
"""Runs the failure sensor looks at, and dead runs it publishes, per tick."""

max_replays_per_tick = IntSetting("NOVA_DLQ_MAX_REPLAYS_PER_TICK", default=10, minimum=1)
"""Automatic replays the replay sensor requests per tick (the rest wait for the next tick), so an
outage's backlog does not queue ahead of the schedules."""

max_waiting = IntSetting("NOVA_DLQ_MAX_WAITING", default=1000, minimum=1)
"""Messages the replay sensor keeps waiting in its cursor; beyond that it stops reading the topic's
partition (nothing is dropped) until some have been replayed or superseded."""

retention_days = IntSetting("NOVA_DLQ_RETENTION_DAYS", default=14, minimum=1)
"""Retention (`retention.ms`) of the DLQ topics when Nova creates them."""

topic_partitions = IntSetting("NOVA_DLQ_TOPIC_PARTITIONS", default=3, minimum=1)
"""Partitions of the DLQ topics when Nova creates them."""

topic_replication = IntSetting("NOVA_DLQ_TOPIC_REPLICATION", default=1, minimum=1)
"""Replication factor of the DLQ topics when Nova creates them."""

max_tracked = IntSetting("NOVA_DLQ_MAX_TRACKED", default=5000, minimum=1)
"""Parked messages the replay sensor lists one by one (the UI table, `dlq list`); beyond that they
are counted per job, and `nova_dlq_tracked_messages` reaching the cap alerts."""

operator_replays_per_tick = IntSetting("NOVA_DLQ_REDRIVE_PER_TICK", default=20, minimum=1)
"""Operator-requested replays released per tick, oldest first (the redrive rate: with the sensor's
15 s interval, the default is at most 80 a minute)."""


def ui_base_url() -> str:
    """Where the Dagster UI is served, for the failed-run links of the DLQ table."""
    return setting_str("NOVA_DAGSTER_UI_URL", default="http://localhost:3000").rstrip("/")
