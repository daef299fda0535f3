"""The Redis side of the dashboard's data source: one long-lived connection of its own,
errors translated to :class:`OpsError`.

redis-py's pool reconnects by itself on the next call once Redis is back; a call made
while it is away fails fast with an :class:`~echoes_ops.errors.UnreachableError`.
"""

from __future__ import annotations

import contextlib
import time

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.live import make_polling_client, translated
from echoes_ops.config import Settings
from echoes_ops.errors import OpsError, RefusedError

CLIENT_NAME = "echoes-ops-dashboard"


class SourceBase:
    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        self.settings = settings
        self.target = settings.redis_target()
        self.display = self.target.display
        self.environment = settings.environment
        self.dsn = settings.database_dsn()
        self.postgres = self.dsn is not None
        self.env_file = settings.env_file
        self.operator = settings.operator_name()
        self.read_only = read_only  # --read-only, or the ACL user may not write
        self.warnings: list[str] = []
        self._client: AnyRedis | None = None
        # names the fast poll reads (from the last census); None: not known yet
        self.known_workers: set[str] | None = None
        self.known_locks: set[str] | None = None

    def clock(self) -> float:
        return time.time()

    def redis(self) -> AnyRedis:
        if self._client is None:
            self._client = make_polling_client(self.target, client_name=CLIENT_NAME)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OpsError), translated(self.display):
                await self._client.aclose()
            self._client = None

    def take_warnings(self) -> list[str]:
        out, self.warnings = self.warnings, []
        return out

    def check_writable(self, what: str) -> None:
        if self.read_only:
            raise RefusedError(f"read-only dashboard: {what} refused, nothing changed")
