"""The cache the Nova API reads: `REDIS_URL` (`redis://`, `rediss://` for TLS, or `unix://`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from nova_jobs.lib.redact import redact_url
from nova_jobs.lib.settings import SettingError
from nova_jobs.resources.urls import check_url, shown

if TYPE_CHECKING:
    import redis


def validate_redis_url(url: str) -> None:
    parts = check_url("REDIS_URL", url, ("redis", "rediss", "unix"))
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingError(f"REDIS_URL={shown(parts)!r} has no host")


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
        # Imported here: every run process loads the code location (redis-py takes ~0.2 s).
        import redis

        validate_redis_url(self.url)
        return redis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout_seconds,
            socket_connect_timeout=min(self.socket_timeout_seconds, 5.0),
            health_check_interval=30,
        )
