"""Job settings resolved at run time: explicit value, else environment variable, else default.

Every error names the setting, so a bad deployment says what to fix instead of failing deep
inside a query.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A configuration value that cannot work; retrying will not fix it."""


def _raw(name: str, explicit: object | None) -> str | None:
    if explicit is not None:
        return str(explicit)
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _unless_default(explicit, default):
    # The launchpad shows run-config fields at their defaults: a field left there defers to the
    # deployment's environment variable, so only a value someone changed overrides it.
    return None if explicit is not None and explicit == default else explicit


def _label(name: str, explicit: object | None, field: str | None) -> str:
    """What an error names: the run-config field when the value came from one, else the
    environment variable (or the setting) it came from."""
    return f"run config {field}" if explicit is not None and field else name


def _parse(kind: type[T], value: str) -> T | None:
    # Raised outside the `except`, a SettingError carries no parse error as its context: the
    # setting's name is the root cause an operator sees.
    try:
        return kind(value)  # type: ignore[call-arg]
    except ValueError:
        return None


def setting_str(name: str, explicit: str | None = None, default: str | None = None) -> str:
    value = _raw(name, _unless_default(explicit, default))
    if value is None:
        if default is None:
            raise SettingError(f"{name} is not set")
        return default
    return value


def _setting_number(name, kind, noun, explicit, default, minimum, maximum, field=None):
    explicit = _unless_default(explicit, default)
    value = _raw(name, explicit)
    label = _label(name, explicit, field)
    if value is None:
        if default is None:
            raise SettingError(f"{name} is not set")
        return default
    number = _parse(kind, value)
    if number is None:
        raise SettingError(f"{label}={value!r} is not {noun}")
    if minimum is not None and number < minimum:
        raise SettingError(f"{label}={number} must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise SettingError(f"{label}={number} must be at most {maximum}")
    return number


def setting_int(
    name: str,
    explicit: int | None = None,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    field: str | None = None,
) -> int:
    """`field`: the run-config field `explicit` came from, named in errors instead of `name`."""
    return _setting_number(name, int, "a whole number", explicit, default, minimum, maximum, field)


def setting_choice(
    name: str, choices: Iterable[str], explicit: str | None = None, default: str | None = None,
    field: str | None = None,
) -> str:
    allowed = list(choices)
    explicit = _unless_default(explicit, default)
    value = setting_str(name, explicit, default)
    if value not in allowed:
        raise SettingError(f"{_label(name, explicit, field)}={value!r} is not one of {', '.join(allowed)}")
    return value
