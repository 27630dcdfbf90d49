"""Small helpers for run metadata."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")
_END = object()


class Stopwatch:
    """Named elapsed milliseconds, for MaterializeResult metadata."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.laps: dict[str, float] = {}

    @contextmanager
    def lap(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.laps[name] = self.laps.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def timed(self, items: Iterable[T], name: str) -> Iterator[T]:
        """The items of `items`, the time spent waiting for each added to lap `name` (for a
        streamed query: the fetch time, apart from what the consumer does with the rows)."""
        iterator = iter(items)
        while True:
            with self.lap(name):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item

    def ms(self, name: str) -> int:
        return round(self.laps.get(name, 0.0))

    @property
    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


def utc_now() -> datetime:
    """Evaluation time, to the second (ClickHouse DateTime precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def parse_as_of(value: str | None) -> datetime:
    """An explicit ISO-8601 evaluation time (naive means UTC), or now."""
    if not value:
        return utc_now()
    from nova_jobs.lib.settings import SettingError

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise SettingError(f"as_of={value!r} is not an ISO-8601 time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
