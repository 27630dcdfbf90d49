"""How Nova Jobs writes SQL: one way for every query.

- Values (times, ids, limits, decay factors, key prefixes, id arrays) and identifiers (the
  database) never enter the SQL text. The text holds ClickHouse placeholders `{name:Type}`
  (`{db:Identifier}` for the database) and the values go as clickhouse-connect's `parameters=`,
  which the server binds; the embedded chdb engine receives the same parameters and binds them
  the same way.
- SQL text is a plain string literal (no f-string), so a placeholder reads in the source exactly
  as ClickHouse sees it.
- What really is code (a subquery shared by several queries, a scoring expression built from the
  contract's weights, an alias) is joined to the text by `compose`, plain concatenation; the
  constants of code inside it (event types, weights) are written by `literal`. Nothing else
  assembles SQL: no `.format`, no `.replace`, no doubled or tripled braces.
"""

from __future__ import annotations

import math
import re

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def compose(*parts: str) -> str:
    """SQL text and code fragments, joined in order exactly as they are (no substitution, so the
    `{name:Type}` placeholders in them pass through untouched)."""
    return "".join(parts)


def literal(value: str | int | float) -> str:
    """A constant of code as a ClickHouse literal: a word (an event type) single-quoted, a number
    as Python writes it (`2.0` stays a Float64, `20` an integer). Values from outside are
    parameters, never literals: anything else is refused."""
    if isinstance(value, str):
        if not _WORD.fullmatch(value):
            raise ValueError(f"not a constant of code: {value!r}; bind it as a parameter")
        return "'" + value + "'"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a constant of code: {value!r}; bind it as a parameter")
    return repr(value)


def placeholder(name: str, ch_type: str) -> str:
    """The placeholder `{name:ch_type}`, for a fragment whose caller names the parameter."""
    if not _WORD.fullmatch(name):
        raise ValueError(f"not a parameter name: {name!r}")
    return "{" + name + ":" + ch_type + "}"
