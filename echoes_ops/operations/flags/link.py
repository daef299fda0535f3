"""Redis for the flag commands: opened only when needed, never required.

``flags set`` must work while Redis is down, so Redis (the mirror hash, the
``config_changed`` message, the audit stream) is reached through :class:`LazyRedis`, which
records why it could not connect instead of raising.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.config import RedisTarget
from echoes_ops.errors import OpsError, UnreachableError
from echoes_ops.operations.audit import AuditLog, AuditRecord

# -- target outcomes ---------------------------------------------------------------------
OK = "ok"
UNCHANGED = "unchanged"  # already held the value: nothing written
WOULD_CHANGE = "would change"  # dry run
SKIPPED = "skipped"  # not configured
FAILED = "failed"
UNREACHABLE = "unreachable"


class LazyRedis:
    """A Redis connection opened on first use; ``get()`` returns None (and keeps the error)
    instead of raising when Redis cannot be reached, so flag commands go on without it."""

    def __init__(self, target: RedisTarget | None) -> None:
        self.target = target
        self.error: str | None = None
        self.unreachable = False
        self._client: AnyRedis | None = None
        self._tried = False
        self._stack = contextlib.AsyncExitStack()

    @classmethod
    def of(cls, client: AnyRedis) -> LazyRedis:
        """An already open connection (its owner closes it)."""
        lazy = cls(None)
        lazy._client = client
        lazy._tried = True
        return lazy

    @property
    def opened(self) -> AnyRedis | None:
        """The connection if it has been opened (never opens it)."""
        return self._client

    async def get(self) -> AnyRedis | None:
        if self._tried:
            return self._client
        self._tried = True
        if self.target is None:
            self.error = self.error or "Redis not configured"
            return None
        from echoes_ops.client.connect import open_redis

        try:
            self._client = await self._stack.enter_async_context(open_redis(self.target))
        except OpsError as exc:
            self.error = str(exc)
            self.unreachable = isinstance(exc, UnreachableError)
        return self._client

    async def __aenter__(self) -> LazyRedis:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)


@dataclass
class FlagsAuditLog(AuditLog):
    """The audit trail for flag commands: PostgreSQL, plus the Redis stream only if Redis
    answers, asked when the record is written (after the change, so a dead Redis never
    delays the switch)."""

    lazy: LazyRedis | None = None

    async def write(self, record: AuditRecord) -> None:
        if self.redis is None and self.lazy is not None:
            self.redis = await self.lazy.get()
        await super().write(record)


def text_of(value: object) -> str | None:
    """A reply of a decode_responses client (str) or None, typed as such."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def redis_status(exc: BaseException) -> str:
    return (
        UNREACHABLE
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)
        else FAILED
    )
