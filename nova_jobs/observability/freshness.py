"""Freshness of the caches: a check per cache, stale when not updated within twice its refresh
interval, and the sensor that evaluates them (no cache job runs them: `without_freshness_checks`).

Dagster's `build_last_update_freshness_checks` fails a cache that was never materialized, which
is every cache of a fresh stack (the sensor's first tick comes before the start-up runs finish),
and words a duration under a second as "" ("The last update was  ago"). Here a cache that was
never materialized is not evaluated at all: its check stays pending until the first run writes
it. The sensor's scheduling is Dagster's (`build_sensor_for_freshness_checks`: evaluate again
once a passed check could be overdue, or after a failed one's asset is updated), fed by the
`dagster/fresh_until_timestamp` metadata these checks write.
"""

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from nova_jobs.lib.cache_checks import FRESHNESS_CHECK_NAME

# Read by Dagster's freshness sensor to decide when a passed check could be overdue.
FRESH_UNTIL_KEY = "dagster/fresh_until_timestamp"
LAST_UPDATED_KEY = "dagster/last_updated_timestamp"


def duration_in_words(seconds: float) -> str:
    """A duration as a person reads it: "0.4 seconds", "1 minute, 5 seconds", "2 days, 3 hours"."""
    seconds = seconds if seconds > 0 else 0.0  # a clock a little ahead of the record's (and -0.0)
    if seconds < 10:
        return f"{seconds:.1f} seconds"
    whole = int(seconds)
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count > 1 else ''}")
    return ", ".join(parts[:2])


def last_materialized(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> float | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=1).records
    return records[0].timestamp if records else None


def freshness_result(asset_key: dg.AssetKey, updated: float | None, now: float,
                     stale_after: timedelta) -> dg.AssetCheckResult:
    allowed = stale_after.total_seconds()
    if updated is None:
        # Only when run by hand: the sensor waits for the first materialization.
        return dg.AssetCheckResult(asset_key=asset_key, check_name=FRESHNESS_CHECK_NAME, passed=False,
                                   severity=dg.AssetCheckSeverity.WARN,
                                   description="Never materialized: waiting for the first run of its job.")
    age = now - updated
    at = datetime.fromtimestamp(updated, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata: dict[str, dg.MetadataValue] = {
        LAST_UPDATED_KEY: dg.MetadataValue.timestamp(updated),
        "age_seconds": dg.MetadataValue.float(round(age, 3)),
        "stale_after_seconds": dg.MetadataValue.float(allowed),
    }
    passed = age <= allowed
    if passed:
        metadata[FRESH_UNTIL_KEY] = dg.MetadataValue.timestamp(updated + allowed)
        description = (f"Fresh: last updated {duration_in_words(age)} ago ({at}); "
                       f"stale after {duration_in_words(allowed)}.")
    else:
        metadata["overdue_seconds"] = dg.MetadataValue.float(round(age - allowed, 3))
        description = (f"Stale: last updated {duration_in_words(age)} ago ({at}), "
                       f"more than the allowed {duration_in_words(allowed)}.")
    return dg.AssetCheckResult(asset_key=asset_key, check_name=FRESHNESS_CHECK_NAME, passed=passed,
                               severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata)


def build_freshness_check(asset_key: dg.AssetKey, stale_after: timedelta) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name=FRESHNESS_CHECK_NAME,
        description=f"Stale when the cache was not updated within {duration_in_words(stale_after.total_seconds())}.",
    )
    def freshness_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        now = datetime.now(UTC).timestamp()
        return freshness_result(asset_key, last_materialized(context.instance, asset_key), now, stale_after)

    return freshness_check


def build_freshness_sensor(checks: Sequence[dg.AssetChecksDefinition], name: str,
                           minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        scheduler = dg.build_sensor_for_freshness_checks(freshness_checks=checks, name=name,
                                                         minimum_interval_seconds=minimum_interval_seconds)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=dg.AssetSelection.checks(*checks),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates the caches' freshness checks when the answer can change; a cache "
                    "never materialized stays pending until its first run.",
    )
    def freshness_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason | None:
        decision = scheduler(context)
        if not isinstance(decision, dg.RunRequest):
            return decision
        keys = list(decision.asset_check_keys or [])
        waiting = {key for key in keys if last_materialized(context.instance, key.asset_key) is None}
        if waiting:
            context.log.info("Pending until their first materialization: "
                             + ", ".join(sorted(key.asset_key.to_user_string() for key in waiting)))
        keys = [key for key in keys if key not in waiting]
        if not keys:
            return dg.SkipReason("No freshness check to evaluate: the caches due for one were never materialized yet.")
        return dg.RunRequest(asset_check_keys=keys, tags=decision.tags)

    return freshness_sensor
