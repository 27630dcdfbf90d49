"""The states a DLQ message goes through, as the replay sensor decides them and publishes them on
`jobs-dlq-replay` (the CLI, the exporter and the runbook use these names)."""

WAITING = "waiting"  # cooling down, or behind another replay of its job and partition
REPLAYED = "replayed"  # a replay run was requested
PARKED = "parked"  # permanent: waits for an operator
SKIPPED = "skipped"  # never replayed: malformed, unknown job or partition, duplicate, max replays, ...
SUPERSEDED = "superseded"  # a later run of the same job and partition succeeded
SUCCEEDED = "succeeded"  # its replay run succeeded
REPLAY_FAILED = "replay_failed"  # its replay run failed (it reaches jobs-dlq again on its own)
DISCARDED = "discarded"  # an operator discarded it (with a reason): never replayed
# Not a decision: how the UI and the CLI show a waiting or parked message older than
# NOVA_DLQ_MAX_AGE_HOURS (kept and listed, never dropped silently).
EXPIRED = "expired"

ALL = (WAITING, REPLAYED, PARKED, SKIPPED, SUPERSEDED, SUCCEEDED, REPLAY_FAILED, DISCARDED)
# Nothing more happens to a message in one of these states (unless an operator asks).
FINAL = (SUCCEEDED, REPLAY_FAILED, SUPERSEDED, DISCARDED)
