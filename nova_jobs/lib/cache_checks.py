"""Checks on a cache's values as the Nova API reads them, shared by the assets that evaluate
them in their own step and the observability checks that read Redis back.

Four checks per cache: the value is valid JSON (a list of objects with an id and a score), it
is ranked (score descending, then id ascending), it holds no id twice, and it holds at most K
entries. Here too: the selection a cache job runs, which leaves freshness to its sensor.
(In `lib`, importing no domain, so every domain's assets can use it.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from nova_jobs.lib.settings import setting_int

# The name of every cache's freshness check (observability.freshness builds them; observability.checks asserts it).
FRESHNESS_CHECK_NAME = "freshness_check"


def without_freshness_checks(asset_key: dg.AssetKey) -> dg.AssetSelection:
    """A cache job's selection: its asset and every check on it but freshness, which only the
    freshness sensor evaluates (in a run of its own, when the answer can change), not a step in
    every refresh."""
    return dg.AssetSelection.assets(asset_key) - dg.AssetSelection.checks(dg.AssetCheckKey(asset_key, FRESHNESS_CHECK_NAME))


def top_k_setting(setting: str, default: int) -> Callable[[], int]:
    return lambda: setting_int(setting, None, default, minimum=1, maximum=10_000)


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
