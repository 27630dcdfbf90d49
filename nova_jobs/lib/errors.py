"""Which failures are worth retrying.

Transient: the warehouse, cache or broker was unreachable, slow or overloaded; the same run
later will likely succeed. Permanent: bad SQL, a schema mismatch, bad configuration, data that
cannot be serialised; retrying only delays the alert.

The same rules classify a live exception (in an op, to decide whether the retry policy applies)
and a recorded one (a `dg.SerializableErrorInfo` from the event log, for the dead-letter
message), so both see the error's whole cause chain and judge its root cause first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, NoReturn

import dagster as dg

from nova_jobs.lib.redact import redact_text

ErrorKind = Literal["transient", "permanent"]

# ClickHouse error codes that mean "try again later" (timeouts, overload, memory pressure,
# network, replicas catching up).
TRANSIENT_CLICKHOUSE_CODES = frozenset(
    {3, 159, 160, 202, 203, 209, 210, 241, 242, 252, 285, 319, 394, 425, 999, 1000}
)
# Codes that retrying can never fix: syntax, unknown table/column/function/database, type
# mismatch, unparsable values; 164 READONLY (the user or setting is read-only: a grant, not a
# state that passes) and 170 BAD_GET (a misconfigured cluster or setting name).
PERMANENT_CLICKHOUSE_CODES = frozenset({6, 27, 36, 41, 43, 44, 46, 47, 48, 53, 60, 62, 70, 81, 164, 170, 386})

# Class names (anywhere in an exception's MRO, or the recorded class name) per kind. Names, not
# classes, so recorded errors from another process classify the same way and optional client
# libraries need not be imported.
TRANSIENT_CLASSES = frozenset({
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "timeout", "NewConnectionError", "ConnectTimeoutError",
    "ReadTimeoutError", "ProtocolError", "OperationalError", "BusyLoadingError", "TryAgainError",
    "ClusterDownError", "KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError",
    "RetriableError",
    # Redis refusing writes for a while: a replica until failover promotes it (READONLY), memory
    # full under noeviction until keys expire (OOM), a cluster resharding (MOVED, ASK) or
    # failing over (MASTERDOWN, CLUSTERDOWN).
    "ReadOnlyError", "OutOfMemoryError", "MasterDownError", "MovedError", "AskError",
})
PERMANENT_CLASSES = frozenset({
    "PermanentJobError", "SettingError", "TypeError", "ValueError", "KeyError", "AttributeError",
    "UnicodeError", "JSONDecodeError", "ProgrammingError", "DataError", "DagsterInvalidConfigError",
    "FileNotFoundError", "PermissionError", "NotADirectoryError", "IsADirectoryError",
    "AuthenticationError", "AuthenticationFailedError", "NoPermissionError",
})
# Wrappers that say nothing about the cause: skipped when looking for the root cause.
WRAPPER_CLASSES = frozenset({
    "DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy", "DagsterUserCodeExecutionError",
    "DagsterExecutionInterruptedError", "DagsterResourceFunctionError",
    # Redis's "Transaction discarded because of previous errors": the queued command's own
    # error (READONLY, OOM, ...) is what happened.
    "ExecAbortError",
})

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
    "try again",
)
# The embedded store held by another process: chdb reports it with a code that otherwise means
# a bad argument.
_LOCKED_STORE = ("error initializing embeddedserver", "cannot lock file")
_CODE = re.compile(r"Code: (\d+)\.")
# Redis error replies that pass, by their prefix: a plain ResponseError carries them as text
# (redis-py maps only the prefixes it knows to classes; a pipeline prefixes "... caused error: ").
TRANSIENT_REDIS_REPLIES = frozenset(
    {"READONLY", "OOM", "LOADING", "TRYAGAIN", "MASTERDOWN", "MOVED", "ASK", "CLUSTERDOWN", "BUSY"}
)
_REDIS_REPLY = re.compile(r"(?:^|caused error: )([A-Z]+)(?:\s|$)")


class PermanentJobError(Exception):
    """Raised by job code for a failure that no retry can fix."""


@dataclass(frozen=True)
class ErrorLink:
    """One error of a cause chain, live or recorded."""

    cls_name: str
    class_names: tuple[str, ...]
    message: str
    code: int | None = None


def _exception_chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _link(error: BaseException) -> ErrorLink:
    code = getattr(error, "code", None)
    return ErrorLink(
        cls_name=type(error).__name__,
        class_names=tuple(cls.__name__ for cls in type(error).__mro__),
        message=str(error),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def error_info_chain(info: dg.SerializableErrorInfo | None) -> list[ErrorLink]:
    """The links of a recorded error, outermost first (explicit causes before contexts)."""
    links: list[ErrorLink] = []
    while info is not None and len(links) < 50:
        cls_name = info.cls_name or "Exception"
        message = info.message or ""
        # Recorded messages are "module.Class: text"; keep the text.
        head = message.split(":", 1)
        if len(head) == 2 and head[0].strip().endswith(cls_name):
            message = head[1]
        links.append(ErrorLink(cls_name, (cls_name,), message.strip()))
        info = info.cause or info.context
    return links


def root_cause(error: BaseException) -> BaseException:
    """Follow the __cause__/__context__ chain to the first error raised, skipping wrappers."""
    chain = _exception_chain(error)
    for link in reversed(chain):
        if type(link).__name__ not in WRAPPER_CLASSES:
            return link
    return chain[-1]


def root_link(links: Sequence[ErrorLink]) -> ErrorLink | None:
    """The first error raised, skipping Dagster's wrappers when it is one of them."""
    for link in reversed(links):
        if link.cls_name not in WRAPPER_CLASSES:
            return link
    return links[-1] if links else None


def _clickhouse_code(link: ErrorLink) -> int | None:
    if link.code is not None:
        return link.code
    match = _CODE.search(link.message)
    return int(match.group(1)) if match else None


def _kind_of(link: ErrorLink) -> ErrorKind | None:
    names = set(link.class_names)
    lowered = link.message.lower()
    if names & {"PermanentJobError", "SettingError"}:
        return "permanent"
    if any(marker in lowered for marker in _LOCKED_STORE):
        return "transient"
    code = _clickhouse_code(link)
    if code in TRANSIENT_CLICKHOUSE_CODES:
        return "transient"
    if code in PERMANENT_CLICKHOUSE_CODES:
        return "permanent"
    # The error's own class before its bases: redis-py's AuthenticationError is a
    # ConnectionError, yet a wrong password never heals (and a recorded error has no bases).
    if link.cls_name in PERMANENT_CLASSES:
        return "permanent"
    if link.cls_name in TRANSIENT_CLASSES:
        return "transient"
    reply = _REDIS_REPLY.search(link.message)
    if reply and reply.group(1) in TRANSIENT_REDIS_REPLIES:
        return "transient"
    if names & TRANSIENT_CLASSES:
        return "transient"
    if names & PERMANENT_CLASSES:
        return "permanent"
    if link.cls_name in WRAPPER_CLASSES:
        return None
    if any(fragment in lowered for fragment in TRANSIENT_MESSAGES):
        return "transient"
    return None


def classify_links(links: Sequence[ErrorLink]) -> ErrorKind:
    """The root cause decides; when it says nothing, the nearest wrapper that does; unknown
    errors are permanent (a retry would only delay the alert)."""
    for link in reversed(links):
        kind = _kind_of(link)
        if kind is not None:
            return kind
    return "permanent"


def classify(error: BaseException) -> ErrorKind:
    """Classify an error (and the chain behind it) as transient or permanent."""
    return classify_links([_link(e) for e in _exception_chain(error)])


def classify_error_info(info: dg.SerializableErrorInfo | None) -> ErrorKind:
    return classify_links(error_info_chain(info))


def classified_failure(description: str, kind: ErrorKind, error_class: str, metadata: dict | None = None) -> dg.Failure:
    """A Dagster failure that says its kind: the retry policy applies to a transient one only,
    and the dead-letter message takes `error_kind` and `error_class` from its metadata."""
    return dg.Failure(
        description=redact_text(description),
        metadata={**(metadata or {}), "error_kind": kind, "error_class": error_class},
        allow_retries=kind == "transient",
    )


def permanent_failure(error: BaseException, what: str) -> dg.Failure:
    """A Dagster failure that skips the retry policy, keeping the root cause in its text."""
    cause = root_cause(error)
    return classified_failure(f"{what}: {type(cause).__name__}: {cause}", "permanent", type(cause).__name__)


def reraise_classified(error: BaseException, what: str) -> NoReturn:
    """Raise transient errors as they are (the retry policy handles them) and permanent ones
    as a Failure that skips retries."""
    if classify(error) == "transient":
        raise error
    raise permanent_failure(error, what) from error


@contextmanager
def classified(what: str) -> Iterator[None]:
    """Any error in the block leaves it classified (`reraise_classified`), its message saying
    what was being done: `with classified(f"trending query on {url}"): ...`. A Dagster
    Failure raised inside, already classified, passes through."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:  # noqa: BLE001 - classified: transient retries, permanent fails
        reraise_classified(error, what)
