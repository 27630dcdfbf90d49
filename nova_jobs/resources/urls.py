"""Checking a connection URL setting without ever repeating its password.

`urlsplit` misreads a password holding `#`, `?`, `/` or `@` (the rest becomes a fragment, a
path or a "port"), and its errors quote the pieces it misread. So the URL is split by
`nova_jobs.lib.redact.split_url` (userinfo up to the last `@`), every message shows only the
redacted form, and `urlsplit` (what redis-py and clickhouse-connect use) must then agree on the
host and port, or the setting is refused with a hint to percent-encode.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from nova_jobs.lib.redact import UrlError, UrlParts, redact_text, split_url
from nova_jobs.lib.settings import SettingError

# Characters a client library reads as the end of the userinfo or host: they must be %-encoded.
_MUST_ENCODE = re.compile(r"[/?#@\[\]\s]")
ENCODE_HINT = "percent-encode them, e.g. urllib.parse.quote(password, safe='')"


def shown(parts: UrlParts) -> str:
    """What a message may show of a URL: scheme, host, port and path, no user or password."""
    return redact_text(parts.redacted(keep_user=False))


def _split_the_way_clients_do(url: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(url)
        return (parts.hostname or "", parts.port)
    except ValueError:
        return None


def check_url(setting: str, url: str, schemes: tuple[str, ...]) -> UrlParts:
    """The URL split, or SettingError naming the setting and showing only the redacted URL.
    Errors are raised outside any `except`, so no parser message (which may quote the
    password) rides along as the error's context."""
    if not url or not url.strip():
        raise SettingError(f"{setting} is not set")
    url = url.strip()
    problem = None
    try:
        parts = split_url(url)
    except UrlError as error:
        problem = str(error)
    if problem is not None:
        raise SettingError(f"{setting} is not a valid URL: {problem}")
    display = shown(parts)
    if parts.scheme not in schemes:
        raise SettingError(f"{setting}={display!r}: scheme must be {', '.join(schemes[:-1])} or {schemes[-1]}")
    if parts.userinfo is not None and _MUST_ENCODE.search(parts.userinfo):
        raise SettingError(
            f"{setting}={display!r}: the user name or password holds characters that end it in a URL "
            f"(/ ? # @ [ ] or spaces); {ENCODE_HINT}"
        )
    port = parts.port_text
    if port is not None and port != "" and (not port.isdigit() or not 0 < int(port) < 65536):
        raise SettingError(f"{setting}={display!r}: the port must be a number from 1 to 65535")
    if parts.hostport:
        seen = _split_the_way_clients_do(url)
        expected = (parts.hostname.lower(), int(port) if port else None)
        if seen != expected:
            raise SettingError(
                f"{setting}={display!r} is read differently by the client library (host or port); "
                f"if the user name or password holds special characters, {ENCODE_HINT}"
            )
    return parts
