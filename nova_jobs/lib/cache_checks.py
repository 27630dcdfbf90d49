"""Checks on a cache's values as the Nova API reads them, shared by the assets that evaluate
them in their own step and the observability checks that read Redis back.

One check per cache, `contents`, judging four aspects: the value is valid JSON (a list of objects
with an id and a score), it is ranked (score descending, then id ascending), it holds no id
twice, and it holds at most K entries. The check's metadata gives each aspect's problem count
and examples, and its description names the aspects that failed. One check rather than four:
each check result is two events written by every run (planned, then evaluated), and four cost
an every-minute run about 0.2 s more than one (`make bench`, nova_jobs_dev/bench_profile.py).
(In `lib`, importing no domain, so every domain's assets can use it.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from nova_jobs.catalog import CacheJob
from nova_jobs.lib.settings import setting_int

CHECK_NAME = "contents"
ASPECTS = ("json_valid", "ranked", "no_duplicates", "at_most_k")
# Caches of one key per user are checked on this many of their keys.
SAMPLE_KEYS = 500


def resolve_max_items(job: CacheJob) -> int:
    """The list length K at run time: the deployment's variable may override the contract's."""
    if job.list_length_setting is None:
        return job.list_length
    return setting_int(job.list_length_setting, None, job.list_length, minimum=1, maximum=10_000)


@dataclass
class Findings:
    """Problems per check name, with a few examples each, over every key inspected."""

    keys: int = 0
    entries: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in ASPECTS})
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ASPECTS, 0))

    def add(self, check: str, message: str) -> None:
        self.counts[check] += 1
        if len(self.problems[check]) < 5:
            self.problems[check].append(message)


def inspect_value(findings: Findings, key: str, raw: str | bytes | None, job: CacheJob, max_items: int) -> None:
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
        isinstance(item, dict) and isinstance(item.get(job.id_field), int)
        and isinstance(item.get("score"), (int, float)) and not isinstance(item.get("score"), bool)
        for item in items
    ):
        findings.add("json_valid", f"{key}: not a list of objects with an integer {job.id_field} and a numeric score")
        return
    findings.entries += len(items)

    ids = [item[job.id_field] for item in items]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        findings.add("no_duplicates", f"{key}: {job.id_field} repeated: {duplicated}")
    if len(items) > max_items:
        findings.add("at_most_k", f"{key}: {len(items)} entries, more than {max_items}")
    problem = ranking_problem(items, job)
    if problem:
        findings.add("ranked", f"{key}: {problem}")


def ranking_problem(items: Sequence[dict], job: CacheJob) -> str | None:
    if job.reason_order:
        reasons = [item.get("reason") for item in items]
        unknown = sorted({str(r) for r in reasons if r not in job.reason_order})
        if unknown:
            return f"unknown reason(s) {unknown}"
        positions = [job.reason_order.index(r) for r in reasons]
        if positions != sorted(positions):
            return f"reasons out of order (expected {' before '.join(job.reason_order)})"
        groups = [[item for item in items if item.get("reason") == r] for r in job.ranked_reasons]
    else:
        groups = [list(items)]
    for group in groups:
        order = [(-item["score"], item[job.id_field]) for item in group]
        for index, (before, after) in enumerate(zip(order, order[1:])):
            if after < before:
                return f"entry {index + 1} ({job.id_field}={after[1]}) is ranked after a lower one"
    return None


def content_check_specs(job: CacheJob) -> list[dg.AssetCheckSpec]:
    description = (
        f"What the Nova API reads from `{job.redis_key}`: a JSON list of objects with an integer "
        f"`{job.id_field}` and a numeric `score` (json_valid), ranked by score descending then "
        f"`{job.id_field}` ascending (ranked), no `{job.id_field}` twice (no_duplicates), no longer "
        "than its configured size K (at_most_k)."
    )
    return [dg.AssetCheckSpec(CHECK_NAME, asset=job.asset_key, description=description)]


def inspect_values(job: CacheJob, values: Iterable[tuple[str, Any]]) -> tuple[Findings, int]:
    max_items = resolve_max_items(job)
    findings = Findings()
    for key, raw in values:
        inspect_value(findings, key, raw, job, max_items)
    return findings, max_items


def check_results(job: CacheJob, findings: Findings, max_items: int) -> list[dg.AssetCheckResult]:
    failed = [aspect for aspect in ASPECTS if findings.counts[aspect]]
    metadata: dict[str, Any] = {"keys_checked": findings.keys, "entries_checked": findings.entries, "max_items": max_items}
    for aspect in ASPECTS:
        metadata[f"{aspect}_problems"] = findings.counts[aspect]
        if findings.problems[aspect]:
            metadata[f"{aspect}_examples"] = dg.MetadataValue.json(findings.problems[aspect])
    checked = f"{findings.keys} key(s), {findings.entries} entries"
    return [
        dg.AssetCheckResult(
            asset_key=job.asset_key,
            check_name=CHECK_NAME,
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"Failed {', '.join(failed)} on {checked}." if failed else f"All four aspects hold on {checked}.",
            metadata=metadata,
        )
    ]


def content_check_results(job: CacheJob, values: Iterable[tuple[str, Any]]) -> list[dg.AssetCheckResult]:
    """The content checks on (key, value) pairs a step has just written (for one key per
    user, the caller passes a sample of them)."""
    return check_results(job, *inspect_values(job, values))


class KeySample:
    """The first `SAMPLE_KEYS` (key, value) pairs of a stream, taken as they pass by."""

    def __init__(self) -> None:
        self.limit = SAMPLE_KEYS
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, key: str, value: str) -> None:
        if len(self.pairs) < self.limit:
            self.pairs.append((key, value))
