"""The analytics warehouse: a ClickHouse server in production, embedded chdb locally.

`CLICKHOUSE_URL` is `http(s)://[user:password@]host:port` or `chdb:///absolute/path`;
`CLICKHOUSE_DATABASE` and `CLICKHOUSE_TIMEOUT_MS` set the `database` and `timeout_ms` fields
(`nova_jobs.resources.resources_from_env`). The embedded engine can be opened by one process at
a time, so the client is opened per step (never at import) and opening waits for a run that
holds the store to finish.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from nova_jobs.lib.redact import redact_url
from nova_jobs.lib.settings import SettingError, setting_int, setting_str
from nova_jobs.resources.urls import check_url, shown

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCKED_MARKERS = ("error initializing embeddedserver", "cannot lock file")
DEFAULT_DATABASE = "nova"
DEFAULT_TIMEOUT_MS = 300_000


def validate_clickhouse_url(url: str) -> str:
    """Return the URL's scheme after checking the URL can work; SettingError otherwise."""
    parts = check_url("CLICKHOUSE_URL", url, ("http", "https", "chdb"))
    if parts.scheme == "chdb":
        if parts.userinfo is not None or parts.hostport or not parts.rest.startswith("/") or parts.rest == "/":
            raise SettingError(
                f"CLICKHOUSE_URL={shown(parts)!r}: the embedded engine needs an absolute path, "
                "as in chdb:///var/lib/nova/chdb"
            )
    elif not parts.hostname:
        raise SettingError(f"CLICKHOUSE_URL={shown(parts)!r} has no host")
    return parts.scheme


def validate_identifier(name: str, setting: str) -> str:
    if not _IDENTIFIER.match(name):
        raise SettingError(f"{setting}={name!r} is not a valid ClickHouse identifier")
    return name


class ClickHouseResource(dg.ConfigurableResource):
    """Opens clients on the warehouse named by `CLICKHOUSE_URL`."""

    url: str = Field(description="http(s)://[user:password@]host:port or chdb:///absolute/path")
    database: str = Field(
        default=DEFAULT_DATABASE, description="Database of the source tables (CLICKHOUSE_DATABASE)"
    )
    timeout_ms: int = Field(default=DEFAULT_TIMEOUT_MS, description="Query timeout in ms (CLICKHOUSE_TIMEOUT_MS)")
    lock_wait_seconds: float = Field(
        default=120.0, description="How long to wait for another process to release an embedded store"
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Bad settings fail the run at launch, naming the setting; nothing is opened here.
        validate_clickhouse_url(self.url)
        self.database_name  # noqa: B018 - validates CLICKHOUSE_DATABASE
        self._timeout_seconds()

    # A field left at its default takes its variable if set (lib/settings' one rule): a resource
    # built by hand, or one built before the variable was set (a test), reads what a run would.
    @property
    def database_name(self) -> str:
        name = setting_str("CLICKHOUSE_DATABASE", self.database.strip(), DEFAULT_DATABASE)
        return validate_identifier(name, "CLICKHOUSE_DATABASE")

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def _timeout_seconds(self) -> float:
        return setting_int("CLICKHOUSE_TIMEOUT_MS", self.timeout_ms, DEFAULT_TIMEOUT_MS, minimum=1) / 1000.0

    def _open(self) -> Client:
        # Imported here: every run process loads the code location, few open the warehouse.
        import clickhouse_connect

        scheme = validate_clickhouse_url(self.url)
        if scheme == "chdb":
            return clickhouse_connect.get_client(dsn=self.url)
        timeout = self._timeout_seconds()
        return clickhouse_connect.get_client(
            dsn=self.url,
            connect_timeout=min(timeout, 10.0),
            send_receive_timeout=timeout,
            autogenerate_session_id=False,
        )

    @contextmanager
    def get_client(self) -> Iterator[Client]:
        """A client for the duration of the block; waits for a locked embedded store."""
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.2
        while True:
            try:
                client = self._open()
                break
            except Exception as error:  # noqa: BLE001 - re-raised unless it is the store lock
                locked = any(marker in str(error).lower() for marker in _LOCKED_MARKERS)
                if not locked or time.monotonic() >= deadline:
                    raise
                dg.get_dagster_logger().info(
                    f"ClickHouse store {self.display_url} is held by another process; waiting"
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            yield client
        finally:
            client.close()
