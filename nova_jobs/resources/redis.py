"""The cache the Nova API reads: `REDIS_URL` (`redis://`, `rediss://` for TLS, or `unix://`)."""

from __future__ import annotations

from urllib.parse import urlsplit

import dagster as dg
import redis
from pydantic import Field

from nova_jobs.lib.redact import redact_url
from nova_jobs.lib.settings import SettingError


def validate_redis_url(url: str) -> None:
    if not url:
        raise SettingError("REDIS_URL is not set")
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as error:
        problem = str(error)
    if problem is not None:
        raise SettingError(f"REDIS_URL={redact_url(url)!r} is not a valid URL: {problem}")
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise SettingError(f"REDIS_URL={redact_url(url)!r}: scheme must be redis, rediss or unix")
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingError(f"REDIS_URL={redact_url(url)!r} has no host")


class RedisResource(dg.ConfigurableResource):
    """Connections to the Redis that serves Nova's caches."""

    url: str = Field(description="redis://[:password@]host:port/db, rediss:// for TLS")
    socket_timeout_seconds: float = Field(default=10.0)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad URL fails the run at launch, naming the setting, before any query runs.
        validate_redis_url(self.url)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def get_client(self) -> redis.Redis:
        validate_redis_url(self.url)
        return redis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout_seconds,
            socket_connect_timeout=min(self.socket_timeout_seconds, 5.0),
            health_check_interval=30,
        )
