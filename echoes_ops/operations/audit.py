"""The audit trail: who did what, when, with which arguments, and how it ended.

Every mutating command runs inside :func:`audited`. The record goes to PostgreSQL
(``echoes_ops.audit``) when ``DATABASE_URL`` is configured, and to the capped Redis stream
``echoes:audit`` when Redis is reachable; a failed or interrupted command records its
failure too. A record PostgreSQL did not take is copied in from the stream once it answers
(:mod:`echoes_ops.operations.audit_store`). Writing the record never hides the command's
own outcome: if a sink fails, the problem comes back as a warning for the CLI to print.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.config import REDACTED, PgTimeouts, RedisTarget, Secret, redact_url
from echoes_ops.contract import keys
from echoes_ops.errors import Interrupted, OpsError, UnreachableError
from echoes_ops.operations import identity
from echoes_ops.operations.audit_store import (
    AuditRecord,
    copy_unsynced,
    insert_postgres,
    keep_unsynced,
    stream_fields,
)

SECRET_WORDS = ("password", "secret", "token", "passwd", "credential")


def redact_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments safe to store: secrets replaced, URLs shown without their password."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        lowered = name.lower()
        if isinstance(value, Secret) or any(word in lowered for word in SECRET_WORDS):
            out[name] = REDACTED if value else value
        elif isinstance(value, str) and "://" in value:
            out[name] = redact_url(value)
        elif isinstance(value, str | int | float | bool) or value is None:
            out[name] = value
        elif isinstance(value, list | tuple):
            out[name] = [redact_url(v) if isinstance(v, str) and "://" in v else v for v in value]
        else:
            out[name] = str(value)
    return out


@dataclass
class AuditLog:
    """Where records go. Either sink may be absent."""

    operator: str
    redis: AnyRedis | None = None
    database_url: str | None = None
    warnings: list[str] = field(default_factory=list)
    pg_timeouts: PgTimeouts = field(default_factory=PgTimeouts)
    connect_error: OpsError | None = None  # why ``redis`` is None, when it could not connect
    # ACL WHOAMI of ``redis``, read once (by :meth:`redis_user`); None until read
    _redis_user: str | None = field(default=None, repr=False)

    async def redis_user(self) -> str:
        """The ACL user of this log's Redis connection, read once ("" when there is no
        connection, or the server refuses or lacks ACL WHOAMI)."""
        if self._redis_user is None:
            user: str | None = None
            if self.redis is not None:
                try:
                    user = await identity.whoami(self.redis)
                except (RedisError, OSError):
                    user = None
            self._redis_user = user or ""
        return self._redis_user

    async def who(self) -> identity.Identity:
        """Who runs this command: the declared operator and the authenticated identities."""
        me = identity.local_identity(self.operator)
        return me.with_redis_user(await self.redis_user() or None)

    def client(self) -> AnyRedis:
        """The Redis connection the audited write uses; raises why there is none (inside
        the audited block, so the failure is recorded)."""
        if self.redis is None:
            raise self.connect_error or UnreachableError("Redis is not connected")
        return self.redis

    async def write(self, record: AuditRecord) -> None:
        if self.redis is None and not self.database_url:
            self.warnings.append("audit record not stored: neither Redis nor PostgreSQL reachable")
            return
        if not record.redis_user:
            record.redis_user = await self.redis_user()
        stream_id: str | None = None
        if self.redis is not None:
            try:
                added = await self.redis.xadd(
                    keys.AUDIT_STREAM_KEY,
                    stream_fields(record),
                    maxlen=keys.AUDIT_STREAM_MAXLEN,
                    approximate=True,
                )
                stream_id = str(added)
            except (RedisError, OSError) as exc:
                self.warnings.append(f"audit record not stored in Redis: {exc}")
        if self.database_url:
            await self._to_postgres(self.database_url, record, stream_id)

    async def _to_postgres(self, dsn: str, record: AuditRecord, stream_id: str | None) -> None:
        """Store the record in PostgreSQL, then copy in what the stream kept while it was
        away. If PostgreSQL fails, the stream's copy is marked to be copied later."""
        try:
            await insert_postgres(dsn, [record], self.pg_timeouts)
        except OpsError as exc:
            if self.redis is None or stream_id is None:
                self.warnings.append(f"audit record not stored in PostgreSQL: {exc}")
                return
            try:
                await keep_unsynced(self.redis, stream_id)
            except (RedisError, OSError) as redis_exc:
                self.warnings.append(
                    f"audit record not stored in PostgreSQL ({exc}) and not marked for a "
                    f"later copy ({redis_exc}): only the Redis stream has it"
                )
                return
            self.warnings.append(
                f"audit record not stored in PostgreSQL: {exc}; the Redis stream keeps it "
                "and it is copied into PostgreSQL once PostgreSQL answers"
            )
            return
        if self.redis is not None:
            try:
                await copy_unsynced(self.redis, dsn, self.pg_timeouts)
            except (OpsError, RedisError, OSError) as exc:
                self.warnings.append(
                    f"audit records kept while PostgreSQL was away not copied yet: {exc}"
                )


@dataclass
class AuditEntry:
    """What the audited block reports about its outcome."""

    detail: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def audited(
    log: AuditLog, action: str, args: Mapping[str, Any], *, dry_run: bool
) -> AsyncIterator[AuditEntry]:
    """Record ``action`` when the block ends: ok, failed (with the error) or interrupted."""
    entry = AuditEntry()
    record = AuditRecord(
        at=time.time(),
        operator=log.operator,
        action=action,
        args=redact_args(args),
        dry_run=dry_run,
        result="ok",
    )
    try:
        yield entry
    except (KeyboardInterrupt, asyncio.CancelledError):
        record.result = "interrupted"
        record.detail = entry.detail or None
        await asyncio.shield(log.write(record))
        raise
    except Interrupted as exc:
        # stopped at a step boundary: the error's detail says what was really done
        record.result = "interrupted"
        record.detail = {**entry.detail, **(exc.detail or {}), "outcome": exc.message}
        await log.write(record)
        raise
    except BaseException as exc:
        record.result = "failed"
        extra = exc.detail if isinstance(exc, OpsError) and exc.detail else {}
        record.detail = {**entry.detail, **extra, "error": str(exc) or type(exc).__name__}
        await log.write(record)
        raise
    record.detail = entry.detail or None
    await log.write(record)


@asynccontextmanager
async def audited_redis(
    target: RedisTarget,
    *,
    operator: str,
    database_url: str | None,
    action: str,
    args: Mapping[str, Any],
    dry_run: bool,
    pg_timeouts: PgTimeouts | None = None,
) -> AsyncIterator[tuple[AnyRedis, AuditEntry, AuditLog]]:
    """Open Redis and run the block audited. A failure to connect is recorded too (in
    PostgreSQL, the one sink left), then re-raised."""
    from echoes_ops.client.connect import open_redis

    log = AuditLog(operator=operator, database_url=database_url)
    if pg_timeouts is not None:
        log.pg_timeouts = pg_timeouts
    connected = False
    try:
        async with open_redis(target) as r:
            connected = True
            log.redis = r
            async with audited(log, action, args, dry_run=dry_run) as entry:
                yield r, entry, log
    except BaseException as exc:
        if not connected:
            await log.write(
                AuditRecord(
                    at=time.time(),
                    operator=operator,
                    action=action,
                    args=redact_args(args),
                    dry_run=dry_run,
                    result="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                    detail={"error": str(exc) or type(exc).__name__},
                )
            )
        raise


__all__ = ["AuditEntry", "AuditLog", "AuditRecord", "audited", "audited_redis", "redact_args"]
