"""Engagement weights of the contract (view 0.1, like 2, comment 3, share 5) as SQL, in one place."""

EVENT_WEIGHTS = {"view": 0.1, "like": 2.0, "comment": 3.0, "share": 5.0}

KNOWN_TYPES_SQL = "(" + ", ".join(f"'{event_type}'" for event_type in EVENT_WEIGHTS) + ")"

# An event's weight; other event types weigh nothing.
WEIGHT_SQL = "multiIf(" + ", ".join(f"event_type = '{t}', {w}" for t, w in EVENT_WEIGHTS.items()) + ", 0.0)"

# The same in tenths, as integers: a sum of them is exact whatever order ClickHouse adds the
# events in, so a score is the same on every run (divide by 10 after summing).
WEIGHT_TENTHS_SQL = (
    "multiIf(" + ", ".join(f"event_type = '{t}', {round(w * 10)}" for t, w in EVENT_WEIGHTS.items()) + ", 0)"
)
