"""Suggested users: "people you may know" for every active Nova user, refreshed every 10 minutes.

The asset is a graph of `SUGGESTION_SHARDS` shard steps (users split by a stable hash) and a
step that records the totals. Under the Kubernetes executor each shard step runs in a pod of
its own; `dagster job execute -j suggested_users` runs them all. The shard count shapes the job
graph, so it is read when the code location loads (like `NOVA_EXECUTOR`); every other setting
is read when a run computes.
"""

import logging
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from nova_jobs.catalog import SUGGESTED_USERS
from nova_jobs.executors import restricted_k8s_config
from nova_jobs.lib.cache import resolve_max_failed_keys, settle_rejected_writes
from nova_jobs.lib.errors import classified
from nova_jobs.lib.jobs import OWNERS
from nova_jobs.lib.settings import SettingError, setting_int
from nova_jobs.lib.timing import parse_as_of
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.resources.redis import RedisResource
from nova_jobs.suggestions.compute import ShardStats, compute_shard
from nova_jobs.suggestions.queries import SUGGESTED_TTL_SECONDS, resolve_caps
from nova_jobs.warehouse.active_users import resolve_active_days

log = logging.getLogger(__name__)

DEFAULT_SHARDS = 4

# Under the k8s executor every shard step is a pod with these requests and limits.
SHARD_K8S_CONFIG = restricted_k8s_config({
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
})


class SuggestionsConfig(dg.Config):
    """Per-run overrides, shown in the launchpad at their defaults. A field left at its default
    takes its environment variable if set (the deployment's value), else that default."""

    per_user: int = Field(SUGGESTED_USERS.list_length, description="Suggestions per user (SUGGESTIONS_PER_USER)")
    max_followees: int = Field(1000, description="Followees considered per user (SUGGESTION_MAX_FOLLOWEES)")
    max_per_followee: int = Field(
        1000, description="Candidates per followee (SUGGESTION_MAX_CANDIDATES_PER_FOLLOWEE)"
    )
    popular_pool: int = Field(10_000, description="Most-followed users kept for the fill (SUGGESTION_POPULAR_POOL)")
    users_per_query: int = Field(50_000, description="Users per query within a shard (SUGGESTION_USERS_PER_QUERY)")
    active_days: int = Field(7, description="Active-user window in days (ACTIVE_DAYS)")
    max_failed_keys: int = Field(0, description="Keys Redis may reject per shard before it fails (CACHE_MAX_FAILED_KEYS)")
    as_of: str | None = Field(None, description="ISO-8601 evaluation time; default: when the run was created")


def resolve_shards(explicit: int | None = None) -> int:
    return setting_int("SUGGESTION_SHARDS", explicit, DEFAULT_SHARDS, minimum=1, maximum=256)


def load_shards() -> tuple[int, str | None]:
    """(shard count, problem), read when the code location loads. A bad value must not take the
    location (and its DLQ sensors) down: the graph gets the default count and every shard step
    fails its run with the problem, naming the setting."""
    try:
        return resolve_shards(), None
    except SettingError as error:
        log.warning("%s; suggested_users runs will fail until it is fixed", error)
        return DEFAULT_SHARDS, str(error)


def run_evaluation_time(context: dg.OpExecutionContext, as_of: str | None) -> datetime:
    """One `now` for every shard of a run (also a shard retried later): the run's creation."""
    if as_of:
        return parse_as_of(as_of)
    record = context.instance.get_run_record_by_id(context.run_id)
    if record is None:
        return parse_as_of(None)
    return record.create_timestamp.astimezone(UTC).replace(microsecond=0)


def build_shard_op(shard: int, shards: int, load_problem: str | None = None) -> dg.OpDefinition:
    @dg.op(
        name=f"suggestions_shard_{shard}",
        ins={"warehouse": dg.In(dg.Nothing)},
        out=dg.Out(dg.Nothing),
        retry_policy=SUGGESTED_USERS.retries.policy,
        pool=SUGGESTED_USERS.pool,
        tags={"dagster-k8s/config": SHARD_K8S_CONFIG, "nova/shard": str(shard)},
        description=f"Suggestions for the active users of shard {shard} of {shards}.",
    )
    def suggestions_shard(
        context: dg.OpExecutionContext,
        config: SuggestionsConfig,
        clickhouse: ClickHouseResource,
        redis: RedisResource,
    ) -> dg.Output:
        with classified("bad suggested users configuration"):
            if load_problem is not None:
                raise SettingError(load_problem)
            caps = resolve_caps(config.per_user, config.max_followees, config.max_per_followee, config.popular_pool)
            active_days = resolve_active_days(config.active_days)
            users_per_query = setting_int(
                "SUGGESTION_USERS_PER_QUERY", config.users_per_query, 50_000, minimum=1, field="users_per_query"
            )
            max_failed_keys = resolve_max_failed_keys(config.max_failed_keys)
            now = run_evaluation_time(context, config.as_of)
            database = clickhouse.database_name

        what = f"suggested users shard {shard}"
        with classified(f"{what} on {clickhouse.display_url}"), clickhouse.get_client() as client:
            stats = compute_shard(
                client, redis.get_client(), database, now, active_days, caps, shard, shards, users_per_query
            )

        stats.tolerated = settle_rejected_writes(
            stats.writes, max_failed_keys, f"{what} on {redis.display_url}", metadata=stats.as_metadata()
        )
        context.log.info(f"shard {shard}/{shards}: {stats.as_metadata()}")
        return dg.Output(None, metadata={**stats.as_metadata(), "as_of": now.isoformat()})

    return suggestions_shard


def _shard_totals(context: dg.OpExecutionContext, shards: int) -> tuple[ShardStats, int]:
    """Sum the shard steps' output metadata from this run's event log (shards may have run in
    other pods, so nothing is passed in memory)."""
    totals = ShardStats()
    slowest = 0
    names = {f"suggestions_shard_{i}" for i in range(shards)}
    for entry in context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        event = entry.dagster_event
        if event is None or not any(event.step_key.endswith(name) for name in names):
            continue
        metadata = {key: value.value for key, value in event.step_output_data.metadata.items()}
        for field in ShardStats().as_metadata():
            if field == "elapsed_ms":
                slowest = max(slowest, int(metadata.get(field, 0)))
            else:
                setattr(totals, field, getattr(totals, field) + int(metadata.get(field, 0)))
    return totals, slowest


def build_suggested_users_asset(shards: int | None = None) -> dg.AssetsDefinition:
    load_problem = None
    if shards is None:
        shards, load_problem = load_shards()
    else:
        shards = resolve_shards(shards)
    shard_ops = [build_shard_op(i, shards, load_problem) for i in range(shards)]

    @dg.op(
        name="suggestions_summary",
        out=dg.Out(dg.Nothing),
        ins={"shards_done": dg.In(dg.Nothing)},
        pool=SUGGESTED_USERS.pool,
    )
    def suggestions_summary(context: dg.OpExecutionContext) -> dg.Output:
        totals, slowest = _shard_totals(context, shards)
        if totals.failed:
            context.log.warning(f"{totals.failed} suggestion keys could not be written (tolerated)")
        return dg.Output(
            None,
            metadata={
                "dagster/row_count": totals.written,
                "items_processed": totals.written,
                "users": totals.users,
                "keys_written": totals.written,
                "failed": totals.failed,
                "tolerated": totals.tolerated,
                "mutual_suggestions": totals.mutual,
                "popular_fill": totals.popular,
                "short_lists": totals.short_lists,
                "shards": shards,
                "query_ms": totals.query_ms,
                "write_ms": totals.write_ms,
                "slowest_shard_ms": slowest,
                "ttl_seconds": SUGGESTED_TTL_SECONDS,
            },
        )

    @dg.config_mapping
    def same_config_for_every_shard(config: SuggestionsConfig) -> dict:
        values = {key: value for key, value in config.model_dump().items() if value is not None}
        return {op.name: {"config": values} for op in shard_ops}

    @dg.graph_asset(
        key=SUGGESTED_USERS.asset_key,
        # The warehouse tables it reads, for lineage (a graph asset takes no `deps`).
        ins={key.path[-1]: dg.AssetIn(key) for key in SUGGESTED_USERS.reads},
        group_name="suggestions",
        kinds={"clickhouse", "redis"},
        owners=OWNERS,
        config=same_config_for_every_shard,
        metadata={"redis_key_pattern": SUGGESTED_USERS.redis_key, "shards": shards},
        description=(
            "\"People you may know\" for every user active in the last week, as the Nova API "
            f"serves them from `{SUGGESTED_USERS.redis_key}`: the people followed by the most "
            "of the user's followees, then the most-followed people, never someone they follow, "
            "themselves or anyone in a block with them. Kept for a day, refreshed every 10 minutes."
        ),
    )
    def suggested_users(**warehouse_tables):
        tables = list(warehouse_tables.values())
        return suggestions_summary(shards_done=[op(warehouse=tables) for op in shard_ops])

    return suggested_users
