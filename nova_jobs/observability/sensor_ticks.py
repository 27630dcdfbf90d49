"""Are the sensors ticking? Per sensor of the instance: running or stopped, when its last tick
succeeded, how many ticks in a row failed, and its cursor (the replay sensor keeps its counts there).

Dagster has no public API for sensor ticks: `DagsterInstance.all_instigator_state`,
`get_tick_summaries`/`get_ticks` (what the UI and the daemon read) and `TickStatus` are
internal, so they are used in `_ticks` and `sensor_states` only. Tick summaries come from the
ticks table's columns, without reading tick bodies (the replay sensor's carry its cursor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorState, TickStatus

# Ticks read per sensor and scrape; failures beyond it are taken from the daemon's own count.
TICK_PAGE = 50
SUCCESSFUL = [TickStatus.SUCCESS, TickStatus.SKIPPED]  # skipped: evaluated fine, nothing to do


@dataclass(frozen=True)
class SensorTicks:
    name: str
    code_location: str
    running: bool
    last_success: float | None  # start time of the last tick that did not fail
    consecutive_failures: int
    cursor: str | None


def sensor_states(instance: dg.DagsterInstance) -> list[InstigatorState]:
    return [s for s in instance.all_instigator_state() if s.instigator_type.value == "SENSOR"]


def _ticks(instance: dg.DagsterInstance, state: InstigatorState, limit: int, statuses: Sequence[TickStatus] | None = None):
    """Newest first; each has `.status` and `.timestamp`."""
    found = instance.get_tick_summaries(state.instigator_origin_id, state.selector_id, limit=limit, statuses=statuses)
    if found is None:  # a storage without column-backed summaries
        found = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit, statuses=statuses)
    return list(found)


def read_sensor(instance: dg.DagsterInstance, state: InstigatorState, page: int = TICK_PAGE) -> SensorTicks:
    ticks = _ticks(instance, state, page)
    failures, last_success = 0, None
    for tick in ticks:
        if tick.status in SUCCESSFUL:
            last_success = tick.timestamp
            break
        if tick.status == TickStatus.FAILURE:
            failures += 1
    if last_success is None and len(ticks) == page:
        older = _ticks(instance, state, 1, statuses=SUCCESSFUL)
        last_success = older[0].timestamp if older else None
        # The daemon carries the count from one failed tick to the next (only the newest
        # failure's body is read); a page of ticks still running is not a failure streak.
        latest_failure = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1, statuses=[TickStatus.FAILURE])
        if latest_failure and (last_success is None or latest_failure[0].timestamp > last_success):
            failures = max(failures, latest_failure[0].consecutive_failure_count)
    data = state.sensor_instigator_data
    return SensorTicks(
        name=state.instigator_name,
        code_location=state.repository_selector.location_name,
        running=state.is_running,
        last_success=last_success,
        consecutive_failures=failures,
        cursor=data.cursor if data else None,
    )


def read_sensors(instance: dg.DagsterInstance) -> list[SensorTicks]:
    return sorted((read_sensor(instance, state) for state in sensor_states(instance)), key=lambda s: (s.code_location, s.name))
