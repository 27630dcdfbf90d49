"""Engagement weights of the contract (view 0.1, like 2, comment 3, share 5) as SQL, in one place.

Every SQL expression that weighs events is built here from `EVENT_WEIGHTS` (see
`warehouse/sql.py` for how SQL is written)."""

from nova_jobs.warehouse.sql import literal

EVENT_WEIGHTS = {"view": 0.1, "like": 2.0, "comment": 3.0, "share": 5.0}

KNOWN_TYPES_SQL = "(" + ", ".join(literal(t) for t in EVENT_WEIGHTS) + ")"


def _weight_by_type(weights: dict[str, float | int], other: str) -> str:
    """`multiIf(event_type = 'view', <its weight>, ..., <other>)` over the contract's types."""
    branches = ", ".join("event_type = " + literal(t) + ", " + literal(w) for t, w in weights.items())
    return "multiIf(" + branches + ", " + other + ")"


# An event's type as its position among the contract's types, 1-based, 0 for any other type: a
# small integer groups faster than the type's string (trending's pairs, -20% on 7 days of
# events), and every unknown type shares 0. `WEIGHTS_BY_INDEX_SQL[t]` is that type's weight.
TYPE_INDEX_SQL = "indexOf([" + ", ".join(literal(t) for t in EVENT_WEIGHTS) + "], event_type)"
WEIGHTS_BY_INDEX_SQL = "[" + ", ".join(literal(float(w)) for w in EVENT_WEIGHTS.values()) + "]"

# The same in tenths, as integers: a sum of them is exact whatever order ClickHouse adds the
# events in, so a score is the same on every run (divide by 10 after summing).
WEIGHT_TENTHS_SQL = _weight_by_type({t: round(w * 10) for t, w in EVENT_WEIGHTS.items()}, "0")

# In an aggregation: the weighted sum of the raw counts of each known type (the seed scoring's
# `0.1*views + 2*likes + 3*comments + 5*shares`).
WEIGHTED_COUNTS_SQL = " + ".join(
    literal(w) + " * countIf(event_type = " + literal(t) + ")" for t, w in EVENT_WEIGHTS.items()
)
