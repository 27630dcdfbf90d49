"""Trending windows and scorings of the contract. Window (span, decay, cadence) and scoring
(how events become a score) are separate settings, as the old worker's review asked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from datetime import timedelta

from nova_jobs.catalog import TRENDING_1H, TRENDING_7D, TRENDING_24H, CacheJob
from nova_jobs.lib.settings import SettingError, setting_choice, setting_int

SCORINGS = ("decayed", "seed")
DEFAULT_SCORING = "decayed"
DEFAULT_TOP_K = TRENDING_1H.list_length


class Scoring(StrEnum):
    """The run-config type of `scoring`: Dagster checks it when the run is launched, and a bad
    value is reported at its run-config path (`ops.<op>.config.scoring`), never as the
    environment variable it did not come from. The launchpad offers the choices."""

    decayed = "decayed"
    seed = "seed"


@dataclass(frozen=True)
class TrendingWindow:
    """What a trending query needs beyond its job's declaration: the span and the decay."""

    name: str
    span: timedelta
    decay: float  # per hour
    job: CacheJob

    @property
    def job_name(self) -> str:
        return self.job.name

    @property
    def redis_key(self) -> str:
        return self.job.redis_key

    @property
    def top_k(self) -> int:
        return self.job.list_length


WINDOWS: dict[str, TrendingWindow] = {
    w.name: w
    for w in (
        TrendingWindow("1h", timedelta(hours=1), 0.9, TRENDING_1H),
        TrendingWindow("24h", timedelta(hours=24), 0.95, TRENDING_24H),
        TrendingWindow("7d", timedelta(days=7), 0.98, TRENDING_7D),
    )
}


def get_window(name: str) -> TrendingWindow:
    window = WINDOWS.get(name)
    if window is None:
        raise SettingError(f"trending window {name!r} is not one of {', '.join(WINDOWS)}")
    return window


# A run-config value other than the contract's, then the environment variable, then the contract
# (a field left at the contract's value defers to the variable: see lib/settings.py).
def resolve_scoring(explicit: str | None = None) -> str:
    return setting_choice("TRENDING_SCORING", SCORINGS, explicit, DEFAULT_SCORING, field="scoring")


def resolve_top_k(window: TrendingWindow, explicit: int | None = None) -> int:
    return setting_int("TRENDING_TOPK", explicit, window.top_k, minimum=1, maximum=10_000, field="top_k")
