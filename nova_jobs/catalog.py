"""Every Nova job, declared once: its name, asset, schedule, Redis key, list length, how often
it must succeed, its retries and its priority.

Schedules, jobs, pools, run tags, asset checks, freshness policies, the health endpoint's
intervals, the run queue's asset-to-job map, the dev bootstrap and the bench all read this
module; adding a cache is one `CacheJob` here plus its query and asset. It imports Dagster
alone, so the run queue and the exporter can read it without loading the code location.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

# The warehouse tables the caches read (ClickHouse, written by the rest of Nova; CONTRACT.md).
POST_EVENTS = dg.AssetKey(["warehouse", "post_events"])
POSTS = dg.AssetKey(["warehouse", "posts"])
FOLLOWS = dg.AssetKey(["warehouse", "follows"])
USER_BLOCKS = dg.AssetKey(["warehouse", "user_blocks"])


@dataclass(frozen=True)
class Retries:
    """A job's op retries: Dagster's exponential backoff waits `(2^n - 1) * delay` before retry
    n (plus or minus up to `delay` of jitter), and transient errors alone are retried."""

    max_retries: int
    delay_seconds: float

    @property
    def policy(self) -> dg.RetryPolicy:
        return dg.RetryPolicy(
            max_retries=self.max_retries,
            delay=self.delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        )

    @property
    def delays(self) -> list[float]:
        """The nominal waits before each retry, in seconds (before jitter)."""
        return [(2**n - 1) * self.delay_seconds for n in range(1, self.max_retries + 1)]


@dataclass(frozen=True)
class NovaJob:
    """A scheduled Dagster job that materializes one asset."""

    name: str
    asset_key: dg.AssetKey
    # How often the job is meant to succeed: the health endpoint and the freshness policy use it.
    interval: timedelta
    # `dagster/priority`: higher runs first when the queue is full.
    priority: int
    retries: Retries
    # The schedule; None for a job scheduled from its partitions (trending_history).
    cron: str | None = None
    reads: tuple[dg.AssetKey, ...] = ()

    @property
    def pool(self) -> str:
        """One run at a time holds a job's assets, however it was launched (run-granularity pools)."""
        return f"nova_job.{self.name}"


@dataclass(frozen=True)
class CacheJob(NovaJob):
    """A job that publishes JSON lists to Redis for the Nova API (CONTRACT.md)."""

    # The key, or for one key per user a pattern with `{user_id}`; each has a `:meta` sibling.
    redis_key: str = ""
    id_field: str = ""
    # The contract's list length and the variable a deployment may override it with.
    list_length: int = 0
    list_length_setting: str | None = None
    # For lists that mix reasons: the order reasons appear in, and which are ranked by score.
    reason_order: tuple[str, ...] = ()
    ranked_reasons: tuple[str, ...] = ()

    @property
    def per_user(self) -> bool:
        return "{user_id}" in self.redis_key

    @property
    def key_prefix(self) -> str:
        """`nova:cache:feed:` for a per-user pattern (the queries build keys from it)."""
        return self.redis_key.split("{user_id}")[0]

    @property
    def scan_pattern(self) -> str:
        return self.redis_key.replace("{user_id}", "*")


def trending_job(window: str, cron: str, interval: timedelta, priority: int, retries: Retries) -> CacheJob:
    return CacheJob(
        name=f"trending_{window}",
        asset_key=dg.AssetKey(["cache", f"trending_{window}"]),
        cron=cron,
        interval=interval,
        priority=priority,
        retries=retries,
        reads=(POST_EVENTS,),
        redis_key=f"nova:cache:trending:{window}",
        id_field="post_id",
        list_length=50,
        list_length_setting="TRENDING_TOPK",
    )


# Every-minute jobs retry briefly (2 + 6 s): the next schedule is a minute away and replaces a
# failed run. Slower jobs can wait longer for a warehouse or Redis to come back.
QUICK = Retries(max_retries=2, delay_seconds=2)
STEADY = Retries(max_retries=3, delay_seconds=2)
PATIENT = Retries(max_retries=4, delay_seconds=2)
SLOW = Retries(max_retries=4, delay_seconds=5)

TRENDING_1H = trending_job("1h", "* * * * *", timedelta(minutes=1), priority=10, retries=QUICK)
TRENDING_24H = trending_job("24h", "*/5 * * * *", timedelta(minutes=5), priority=5, retries=STEADY)
TRENDING_7D = trending_job("7d", "0 * * * *", timedelta(hours=1), priority=0, retries=PATIENT)

CACHE_WARMER = CacheJob(
    name="cache_warmer",
    asset_key=dg.AssetKey(["cache", "feeds"]),
    cron="* * * * *",
    interval=timedelta(minutes=1),
    priority=10,
    retries=QUICK,
    # A user with nothing to show gets the 24h trending list.
    reads=(FOLLOWS, POSTS, POST_EVENTS, USER_BLOCKS, TRENDING_24H.asset_key),
    redis_key="nova:cache:feed:{user_id}",
    id_field="post_id",
    list_length=50,
    reason_order=("followed", "trending"),
    ranked_reasons=("followed", "trending"),
)

SUGGESTED_USERS = CacheJob(
    name="suggested_users",
    asset_key=dg.AssetKey(["cache", "suggested_users"]),
    cron="*/10 * * * *",
    interval=timedelta(minutes=10),
    priority=0,
    retries=SLOW,
    reads=(FOLLOWS, USER_BLOCKS, POST_EVENTS),
    redis_key="nova:cache:suggested_users:{user_id}",
    id_field="user_id",
    list_length=20,
    list_length_setting="SUGGESTIONS_PER_USER",
    reason_order=("mutual", "popular"),
    ranked_reasons=("mutual",),
)

# Not caches: the hourly snapshot of the trending lists, and the daily quality measurement.
TRENDING_HISTORY = NovaJob(
    name="trending_history",
    asset_key=dg.AssetKey(["warehouse", "trending_history"]),
    interval=timedelta(hours=1),
    priority=-5,
    retries=SLOW,
    reads=(POST_EVENTS,),
)
SUGGESTED_USERS_QUALITY = NovaJob(
    name="suggested_users_quality",
    asset_key=SUGGESTED_USERS.asset_key,
    cron="30 3 * * *",
    interval=timedelta(days=1),
    priority=-10,
    retries=SLOW,
)

TRENDING_JOBS: tuple[CacheJob, ...] = (TRENDING_1H, TRENDING_24H, TRENDING_7D)
CACHE_JOBS: tuple[CacheJob, ...] = (*TRENDING_JOBS, SUGGESTED_USERS, CACHE_WARMER)
ALL_JOBS: tuple[NovaJob, ...] = (*CACHE_JOBS, TRENDING_HISTORY, SUGGESTED_USERS_QUALITY)
JOBS_BY_NAME: dict[str, NovaJob] = {job.name: job for job in ALL_JOBS}

# The asset each materializing job owns (the quality job only checks an asset).
ASSET_JOBS: dict[str, str] = {
    job.asset_key.to_user_string(): job.name for job in (*CACHE_JOBS, TRENDING_HISTORY)
}
