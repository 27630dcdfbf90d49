"""Which failures are worth retrying.

Transient: the warehouse, cache or broker was unreachable, slow or overloaded; the same run
later will likely succeed. Permanent: bad SQL, a schema mismatch, bad configuration, data that
cannot be serialised; retrying only delays the alert.
"""

from __future__ import annotations

import socket
from typing import Literal

import dagster as dg

from nova_jobs.lib.settings import SettingError

ErrorKind = Literal["transient", "permanent"]

# ClickHouse error codes that mean "try again later" (timeouts, overload, memory pressure,
# network, replicas catching up).
TRANSIENT_CLICKHOUSE_CODES = frozenset(
    {3, 159, 160, 164, 170, 202, 203, 209, 210, 241, 242, 252, 285, 319, 394, 425, 999, 1000}
)
# Codes that retrying can never fix: syntax, unknown table/column/function, type mismatch.
PERMANENT_CLICKHOUSE_CODES = frozenset({36, 43, 44, 47, 48, 53, 60, 62, 70, 81, 386})

TRANSIENT_MESSAGES = (
    "connection refused",
    "connection reset",
    "timed out",
    "timeout",
    "too many simultaneous queries",
    "memory limit",
    "busy",
    "loading the dataset",
    "temporarily unavailable",
    "error initializing embeddedserver",
    "cannot lock file",
    "broken pipe",
)


class PermanentJobError(Exception):
    """Raised by job code for a failure that no retry can fix."""


def root_cause(error: BaseException) -> BaseException:
    """Follow the __cause__/__context__ chain to the first error raised."""
    seen: set[int] = set()
    current = error
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return current


def _clickhouse_code(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    text = str(error)
    marker = "Code: "
    if marker in text:
        digits = text.split(marker, 1)[1].split(".", 1)[0].strip()
        if digits.isdigit():
            return int(digits)
    return None


def classify(error: BaseException) -> ErrorKind:
    """Classify an error (or the chain behind it) as transient or permanent."""
    for candidate in (error, root_cause(error)):
        if isinstance(candidate, (PermanentJobError, SettingError)):
            return "permanent"
        if isinstance(candidate, (TypeError, ValueError, KeyError, UnicodeError)):
            # Serialisation and bad-input errors: the same input fails the same way.
            return "permanent"
        if isinstance(candidate, (ConnectionError, TimeoutError, socket.timeout, OSError)):
            return "transient"
        name = type(candidate).__name__
        if name in {"ConnectionError", "TimeoutError", "BusyLoadingError", "KafkaTimeoutError",
                    "NoBrokersAvailable", "OperationalError"}:
            return "transient"
        code = _clickhouse_code(candidate)
        if code in PERMANENT_CLICKHOUSE_CODES:
            # Code 36 is also how chdb reports a locked store; that one is transient.
            if "error initializing embeddedserver" in str(candidate).lower():
                return "transient"
            return "permanent"
        if code in TRANSIENT_CLICKHOUSE_CODES:
            return "transient"
        lowered = str(candidate).lower()
        if any(fragment in lowered for fragment in TRANSIENT_MESSAGES):
            return "transient"
    return "permanent"


def permanent_failure(error: BaseException, what: str) -> dg.Failure:
    """A Dagster failure that skips the retry policy, keeping the root cause in its text."""
    cause = root_cause(error)
    return dg.Failure(
        description=f"{what}: {type(cause).__name__}: {cause}",
        metadata={"error_kind": "permanent", "error_class": type(cause).__name__},
        allow_retries=False,
    )


def reraise_classified(error: BaseException, what: str) -> None:
    """Raise transient errors as they are (the retry policy handles them) and permanent ones
    as a Failure that skips retries."""
    if classify(error) == "transient":
        raise error
    raise permanent_failure(error, what) from error
