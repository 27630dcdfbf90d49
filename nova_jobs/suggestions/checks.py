"""The suggestion-quality check: would last week's suggestions have predicted this week's follows?"""

import dagster as dg
from pydantic import Field

from nova_jobs.catalog import SUGGESTED_USERS_QUALITY
from nova_jobs.lib.errors import classified
from nova_jobs.lib.settings import setting_int
from nova_jobs.lib.timing import iso_z, parse_as_of
from nova_jobs.resources.clickhouse import ClickHouseResource
from nova_jobs.suggestions.quality import holdout_recall
from nova_jobs.suggestions.queries import resolve_caps

DAY = 86_400


class HoldoutConfig(dg.Config):
    """Per-run overrides, shown in the launchpad at their defaults. A field left at its default
    takes its environment variable if set (the deployment's value), else that default."""

    holdout_days: int = Field(7, description="Days of follows hidden (SUGGESTION_HOLDOUT_DAYS)")
    max_users: int = Field(10_000, description="Users sampled (SUGGESTION_HOLDOUT_MAX_USERS)")
    as_of: str | None = Field(None, description="ISO-8601 end of the holdout; default: now")


@dg.asset_check(
    asset=SUGGESTED_USERS_QUALITY.asset_key,
    name="holdout_recall",
    blocking=False,
    retry_policy=SUGGESTED_USERS_QUALITY.retries.policy,
    pool=SUGGESTED_USERS_QUALITY.pool,
    description=(
        "Hides the follows made in the last days, suggests from the older ones with the job's own "
        "query and caps, and reports the share of hidden follows found in the lists (recall@20), "
        "next to the popular-only baseline. Warns when friends-of-friends do no better than it."
    ),
)
def holdout_recall_check(config: HoldoutConfig, clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
    with classified("bad holdout check configuration"):
        days = setting_int("SUGGESTION_HOLDOUT_DAYS", config.holdout_days, 7, minimum=1, field="holdout_days")
        max_users = setting_int("SUGGESTION_HOLDOUT_MAX_USERS", config.max_users, 10_000, minimum=1, field="max_users")
        caps = resolve_caps()
        end = parse_as_of(config.as_of)
        database = clickhouse.database_name
    end_epoch = int(end.timestamp())
    with classified(f"holdout check on {clickhouse.display_url}"), clickhouse.get_client() as client:
        suggested, popular = holdout_recall(client, database, end_epoch - days * DAY, end_epoch, caps, max_users)
    k = caps.per_user
    return dg.AssetCheckResult(
        passed=suggested.hidden_follows == 0 or suggested.recall >= popular.recall,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"recall_at_{k}": round(suggested.recall, 4),
            f"popular_only_recall_at_{k}": round(popular.recall, 4),
            "hits": suggested.hits,
            "popular_only_hits": popular.hits,
            "hidden_follows": suggested.hidden_follows,
            "users_evaluated": suggested.users,
            "holdout_days": days,
            "holdout_end": iso_z(end),
        },
    )
