"""Keep credentials out of logs, metadata, metric labels and DLQ messages.

Two layers, because text that shows a secret is not always a URL one can parse:
- structure: `scheme://userinfo@host` anywhere in text loses its password. The userinfo runs
  to the LAST `@` of the line, since a password may hold `@`, `/`, `#`, `?`, `:` or spaces
  (`urlsplit` would read `rediss://u:S3cr#t@host` as host `u`, port `S3cr`);
- values: the secrets of the current configuration (the passwords in `REDIS_URL`,
  `CLICKHOUSE_URL`, `KAFKA_SASL_PASSWORD`, `DAGSTER_PG_PASSWORD`), raw and percent-encoded,
  wherever they appear, also outside a URL.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

MASK = "***"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# A scheme in free text; the userinfo after it runs to the last "@" before the end of the line.
_CREDENTIAL_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\r\n]*)@")
_SECRET_PARAMS = re.compile(
    r"(?i)(password|passwd|pwd|secret|token|sasl_plain_password)=([^&\s'\"]+)"
)
# Settings whose value is, or holds, a secret.
URL_SETTINGS = ("REDIS_URL", "CLICKHOUSE_URL")
SECRET_SETTINGS = ("KAFKA_SASL_PASSWORD", "DAGSTER_PG_PASSWORD")
# Shorter values would mask ordinary words everywhere; the structural layer still covers them.
_MIN_SECRET_CHARS = 4


class UrlError(ValueError):
    """A URL that cannot be split; the message never repeats the URL."""


@dataclass(frozen=True)
class UrlParts:
    """A URL split without trusting `urlsplit` on the userinfo. Fields are as written (raw)."""

    scheme: str
    userinfo: str | None
    hostport: str
    rest: str  # path, query and fragment

    @property
    def username(self) -> str | None:
        if self.userinfo is None:
            return None
        return unquote(self.userinfo.split(":", 1)[0])

    @property
    def password(self) -> str | None:
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return unquote(self.userinfo.split(":", 1)[1])

    @property
    def raw_password(self) -> str | None:
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return self.userinfo.split(":", 1)[1]

    @property
    def hostname(self) -> str:
        host = self.hostport
        if host.startswith("["):
            return host[1:].split("]", 1)[0]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def port_text(self) -> str | None:
        host = self.hostport
        tail = host.rsplit("]", 1)[1] if host.startswith("[") and "]" in host else host
        return tail.rsplit(":", 1)[1] if ":" in tail else None

    def redacted(self, keep_user: bool = True) -> str:
        """`scheme://user:***@host:port/path` with secret query parameters masked."""
        if self.userinfo is None:
            auth = ""
        elif keep_user and ":" in self.userinfo:
            auth = f"{self.userinfo.split(':', 1)[0]}:{MASK}@"
        elif keep_user:
            auth = f"{self.userinfo}@"
        else:
            auth = f"{MASK}@"
        return f"{self.scheme}://{auth}{self.hostport}{_SECRET_PARAMS.sub(_mask_param, self.rest)}"


def split_url(url: str) -> UrlParts:
    """Split `scheme://[userinfo@]host[:port][/path][?query]` with the userinfo ending at the
    last `@`. Raises UrlError (never quoting the URL) when there is no `scheme://`."""
    match = _SCHEME.match(url)
    if match is None:
        raise UrlError("it does not start with scheme://")
    rest = url[match.end():]
    userinfo = None
    # A path right after "//" (chdb:///store, unix:///sock) has no authority to hold an "@".
    if "@" in rest and not rest.startswith("/"):
        userinfo, rest = rest.rsplit("@", 1)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return UrlParts(match.group("scheme").lower(), userinfo, rest[:end], rest[end:])


def _mask_param(match: re.Match) -> str:
    return f"{match.group(1)}={MASK}"


def redact_url(url: str) -> str:
    """`http://user:secret@host:8123` -> `http://user:***@host:8123`; whatever cannot be split
    is redacted as free text."""
    try:
        return redact_text(split_url(url).redacted())
    except UrlError:
        return redact_text(url)


def _mask_userinfo(match: re.Match) -> str:
    userinfo = match.group("userinfo")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    # A "user" with a space or a quote in it is text the greedy match swallowed; keep none of it.
    if not user or re.search(r"[\s'\"/]", user):
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{user}:{MASK}@"


def known_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The secret values of the configuration, raw and percent-encoded, longest first."""
    environ = os.environ if environ is None else environ
    values: set[str] = set()
    for name in URL_SETTINGS:
        try:
            password = split_url(environ.get(name, "").strip()).raw_password
        except UrlError:
            continue
        if password:
            values.add(password)
    for name in SECRET_SETTINGS:
        if environ.get(name):
            values.add(environ[name])
    forms = set()
    for value in values:
        forms.update({value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")})
    return sorted((v for v in forms if len(v) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def redact_text(text: str) -> str:
    """Redact credential-bearing URLs, key=value secrets and the configuration's secret values
    anywhere in free text."""
    if not text:
        return text
    for secret in known_secrets():
        text = text.replace(secret, MASK)
    text = _CREDENTIAL_URL.sub(_mask_userinfo, text)
    return _SECRET_PARAMS.sub(_mask_param, text)


class RedactingFormatter(logging.Formatter):
    """A log line, traceback included, redacted: for any handler that writes where people read."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))
