"""Keep credentials out of logs, metadata, metric labels and DLQ messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@")
_SECRET_PARAMS = re.compile(r"(?i)(password|passwd|pwd|secret|token|sasl_plain_password)=([^&\s]+)")


def redact_url(url: str) -> str:
    """`http://user:secret@host:8123` -> `http://user:***@host:8123`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" not in netloc and not _SECRET_PARAMS.search(parts.query):
        return url
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact any credential-bearing URL or key=value secret inside free text."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=***", text)
