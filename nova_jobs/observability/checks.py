"""Asset checks on what the cache jobs write, as the Nova API reads it.

Every cache asset gets four checks: the value is valid JSON (a list of objects with an id and a
score), it is ranked (score descending, then id ascending), it holds no id twice, and it holds
at most K entries. Caches of one key per user are checked on a sample of keys. The trending and
feed assets declare these checks (`content_check_specs`) and evaluate them in their own step on
the values they have just written (`content_check_results`), so a run is one step; the sharded
suggestions asset has no step that sees every value, so its checks read Redis back in a step of
their own (`build_cache_checks`).

Each cache also gets a freshness check: stale when not updated within twice its refresh
interval. Only its sensor runs it, never the cache job (`freshness.without_freshness_checks`): a run per
evaluation that can change the answer, not a step in every refresh.

Adding a cache is one line in CACHE_CHECKS.
"""

import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from nova_jobs.feeds.queries import FEED_KEY_PREFIX, FEED_SIZE
from nova_jobs.lib.retries import NOVA_RETRY_POLICY
from nova_jobs.lib.settings import setting_int
from nova_jobs.observability.freshness import FRESHNESS_CHECK_NAME
from nova_jobs.observability.jobs import JOB_INTERVALS, STALE_AFTER_INTERVALS
from nova_jobs.resources.redis import RedisResource
from nova_jobs.suggestions.queries import SUGGESTED_KEY_PREFIX

CHECK_NAMES = ("json_valid", "ranked", "no_duplicates", "at_most_k")


@dataclass(frozen=True)
class CacheCheckSpec:
    asset_key: dg.AssetKey
    job_name: str
    key: str  # a Redis key, or a SCAN pattern (with `*`) for one key per user
    id_field: str
    max_items: Callable[[], int]  # resolved at run time (settings may override the contract)
    # For lists that mix reasons: the order reasons must appear in, and which must be ranked.
    reason_order: tuple[str, ...] = ()
    ranked_reasons: tuple[str, ...] = ()
    sample_keys: int = 500
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pattern(self) -> bool:
        return "*" in self.key


def _top_k(setting: str, default: int) -> Callable[[], int]:
    return lambda: setting_int(setting, None, default, minimum=1, maximum=10_000)


CACHE_CHECKS: list[CacheCheckSpec] = [
    *(
        CacheCheckSpec(dg.AssetKey(["cache", f"trending_{w}"]), f"trending_{w}", f"nova:cache:trending:{w}", "post_id", _top_k("TRENDING_TOPK", 50))
        for w in ("1h", "24h", "7d")
    ),
    CacheCheckSpec(dg.AssetKey(["cache", "suggested_users"]), "suggested_users", f"{SUGGESTED_KEY_PREFIX}*", "user_id",
                   _top_k("SUGGESTIONS_PER_USER", 20), reason_order=("mutual", "popular"), ranked_reasons=("mutual",)),
    CacheCheckSpec(dg.AssetKey(["cache", "feeds"]), "cache_warmer", f"{FEED_KEY_PREFIX}*", "post_id",
                   lambda: FEED_SIZE, reason_order=("followed", "trending"), ranked_reasons=("followed", "trending")),
]


@dataclass
class Findings:
    """Problems per check name, with a few examples each, over every key inspected."""

    keys: int = 0
    entries: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CHECK_NAMES})
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECK_NAMES, 0))

    def add(self, check: str, message: str) -> None:
        self.counts[check] += 1
        if len(self.problems[check]) < 5:
            self.problems[check].append(message)


def inspect_value(findings: Findings, key: str, raw: str | bytes | None, spec: CacheCheckSpec, max_items: int) -> None:
    findings.keys += 1
    if raw is None:
        findings.add("json_valid", f"{key}: missing")
        return
    try:
        items = json.loads(raw)
    except ValueError as error:
        findings.add("json_valid", f"{key}: not JSON ({error})")
        return
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and isinstance(item.get(spec.id_field), int)
        and isinstance(item.get("score"), (int, float)) and not isinstance(item.get("score"), bool)
        for item in items
    ):
        findings.add("json_valid", f"{key}: not a list of objects with an integer {spec.id_field} and a numeric score")
        return
    findings.entries += len(items)

    ids = [item[spec.id_field] for item in items]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        findings.add("no_duplicates", f"{key}: {spec.id_field} repeated: {duplicated}")
    if len(items) > max_items:
        findings.add("at_most_k", f"{key}: {len(items)} entries, more than {max_items}")
    problem = ranking_problem(items, spec)
    if problem:
        findings.add("ranked", f"{key}: {problem}")


def ranking_problem(items: Sequence[dict], spec: CacheCheckSpec) -> str | None:
    if spec.reason_order:
        reasons = [item.get("reason") for item in items]
        unknown = sorted({str(r) for r in reasons if r not in spec.reason_order})
        if unknown:
            return f"unknown reason(s) {unknown}"
        positions = [spec.reason_order.index(r) for r in reasons]
        if positions != sorted(positions):
            return f"reasons out of order (expected {' before '.join(spec.reason_order)})"
        groups = [[item for item in items if item.get("reason") == r] for r in spec.ranked_reasons]
    else:
        groups = [list(items)]
    for group in groups:
        order = [(-item["score"], item[spec.id_field]) for item in group]
        for index, (before, after) in enumerate(zip(order, order[1:])):
            if after < before:
                return f"entry {index + 1} ({spec.id_field}={after[1]}) is ranked after a lower one"
    return None


def read_cache(client, spec: CacheCheckSpec) -> Iterator[tuple[str, Any]]:
    if not spec.is_pattern:
        yield spec.key, client.get(spec.key)
        return
    keys = []
    for key in client.scan_iter(match=spec.key, count=1000):
        key = key.decode() if isinstance(key, bytes) else key
        if not key.endswith(":meta"):
            keys.append(key)
        if len(keys) >= spec.sample_keys:
            break
    for start in range(0, len(keys), 200):
        chunk = keys[start : start + 200]
        yield from zip(chunk, client.mget(chunk))


def cache_check_spec(job_name: str) -> CacheCheckSpec:
    return next(spec for spec in CACHE_CHECKS if spec.job_name == job_name)


def content_check_specs(spec: CacheCheckSpec) -> list[dg.AssetCheckSpec]:
    descriptions = {
        "json_valid": f"`{spec.key}` holds a JSON list of objects with an integer `{spec.id_field}` and a numeric `score`.",
        "ranked": f"Ranked by score descending, then `{spec.id_field}` ascending, as the contract says.",
        "no_duplicates": f"No `{spec.id_field}` appears twice in one list.",
        "at_most_k": "No list is longer than its configured size (K).",
    }
    return [dg.AssetCheckSpec(check, asset=spec.asset_key, description=descriptions[check]) for check in CHECK_NAMES]


def inspect_values(spec: CacheCheckSpec, values: Iterable[tuple[str, Any]]) -> tuple[Findings, int]:
    max_items = spec.max_items()
    findings = Findings()
    for key, raw in values:
        inspect_value(findings, key, raw, spec, max_items)
    return findings, max_items


def check_results(spec: CacheCheckSpec, findings: Findings, max_items: int) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=check,
            passed=findings.counts[check] == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "keys_checked": findings.keys,
                "entries_checked": findings.entries,
                "max_items": max_items,
                "problems": findings.counts[check],
                "examples": dg.MetadataValue.json(findings.problems[check]),
            },
        )
        for check in CHECK_NAMES
    ]


def content_check_results(spec: CacheCheckSpec, values: Iterable[tuple[str, Any]]) -> list[dg.AssetCheckResult]:
    """The content checks on (key, value) pairs a step has just written (for one key per
    user, the caller passes a sample of them)."""
    return check_results(spec, *inspect_values(spec, values))


class KeySample:
    """The first `spec.sample_keys` (key, value) pairs of a stream, taken as they pass by."""

    def __init__(self, spec: CacheCheckSpec) -> None:
        self.limit = spec.sample_keys
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, key: str, value: str) -> None:
        if len(self.pairs) < self.limit:
            self.pairs.append((key, value))


def build_cache_checks(spec: CacheCheckSpec) -> dg.AssetChecksDefinition:
    """The content checks in a step of their own, reading the values back from Redis."""
    name = "__".join(spec.asset_key.path)

    @dg.multi_asset_check(
        name=f"{name}_contents",
        specs=content_check_specs(spec),
        description=f"What the Nova API reads from `{spec.key}`, checked after each refresh.",
        retry_policy=NOVA_RETRY_POLICY,
    )
    def cache_contents(context: dg.AssetCheckExecutionContext, redis: RedisResource) -> Iterator[dg.AssetCheckResult]:
        findings, max_items = inspect_values(spec, read_cache(redis.get_client(), spec))
        context.log.info(f"checked {findings.keys} key(s), {findings.entries} entries of {spec.key}: {findings.counts}")
        yield from check_results(spec, findings, max_items)

    return cache_contents


def build_freshness_checks(specs: Sequence[CacheCheckSpec]) -> list[dg.AssetChecksDefinition]:
    # Freshness checks (rather than 1.13's FreshnessPolicy on the asset) keep this cross-cutting
    # policy here, visible as checks in the UI, without touching each domain's asset definitions.
    checks: list[dg.AssetChecksDefinition] = []
    for spec in specs:
        interval = JOB_INTERVALS.get(spec.job_name, 3600)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.SupersessionWarning)
            built = dg.build_last_update_freshness_checks(
                assets=[spec.asset_key],
                lower_bound_delta=timedelta(seconds=interval * STALE_AFTER_INTERVALS),
                severity=dg.AssetCheckSeverity.WARN,
            )
        checks.extend(built)
    return checks


# Trending and feeds check their values in their own step (see the module docstring).
CHECKED_IN_STEP = {"trending_1h", "trending_24h", "trending_7d", "cache_warmer"}
cache_content_checks = [build_cache_checks(spec) for spec in CACHE_CHECKS if spec.job_name not in CHECKED_IN_STEP]
freshness_checks = build_freshness_checks(CACHE_CHECKS)

# The cache jobs leave these to the sensor by name (`freshness.without_freshness_checks`).
assert {key.name for checks in freshness_checks for key in checks.check_keys} == {FRESHNESS_CHECK_NAME}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks,
        name="cache_freshness_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
