"""One retry policy for every asset, in the spirit of the old worker's table (2^n seconds, at
most about 30 s) with jitter so that a fleet of retries does not hit ClickHouse in lockstep."""

import dagster as dg

# Delays: 2, 4, 8, 16 s (+/- up to 2 s), then the run fails for good and reaches the DLQ.
NOVA_RETRY_POLICY = dg.RetryPolicy(
    max_retries=4,
    delay=2,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
