"""The audit trail: who did what, when, with which arguments, and how it ended.

Every mutating command runs inside :func:`audited`. The record goes to PostgreSQL
(``echoes_ops.audit``) when ``DATABASE_URL`` is configured, and to the capped Redis stream
``echoes:audit`` when Redis is reachable; a failed or interrupted command records its
failure too. Writing the record never hides the command's own outcome: if a sink fails, the
problem comes back as a warning for the CLI to print.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from echoes_ops import __version__
from echoes_ops.config import REDACTED, PgTimeouts, RedisTarget, Secret, redact_url
from echoes_ops.contract import keys
from echoes_ops.errors import OpsError, PostgresError, UnreachableError

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
class AuditRecord:
    at: float
    operator: str
    action: str
    args: dict[str, Any]
    dry_run: bool
    result: str  # "ok", "failed", "interrupted"
    detail: dict[str, Any] | None = None
    host: str = field(default_factory=socket.gethostname)
    tool_version: str = __version__
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditLog:
    """Where records go. Either sink may be absent."""

    operator: str
    redis: Redis | None = None
    database_url: str | None = None
    warnings: list[str] = field(default_factory=list)
    pg_timeouts: PgTimeouts = field(default_factory=PgTimeouts)
    connect_error: OpsError | None = None  # why ``redis`` is None, when it could not connect

    def client(self) -> Redis:
        """The Redis connection the audited write uses; raises why there is none (inside
        the audited block, so the failure is recorded)."""
        if self.redis is None:
            raise self.connect_error or UnreachableError("Redis is not connected")
        return self.redis

    async def write(self, record: AuditRecord) -> None:
        if self.redis is None and not self.database_url:
            self.warnings.append("audit record not stored: neither Redis nor PostgreSQL reachable")
            return
        if self.redis is not None:
            try:
                await self.redis.xadd(
                    keys.AUDIT_STREAM_KEY,
                    _stream_fields(record),
                    maxlen=keys.AUDIT_STREAM_MAXLEN,
                    approximate=True,
                )
            except (RedisError, OSError) as exc:
                self.warnings.append(f"audit record not stored in Redis: {exc}")
        if self.database_url:
            try:
                await _insert_pg(self.database_url, record, self.pg_timeouts)
            except OpsError as exc:
                self.warnings.append(f"audit record not stored in PostgreSQL: {exc}")


def _stream_fields(record: AuditRecord) -> Any:
    return {
        "at": f"{record.at:.3f}",
        "operator": record.operator,
        "action": record.action,
        "args": json.dumps(record.args, default=str),
        "dry_run": "true" if record.dry_run else "false",
        "result": record.result,
        "detail": json.dumps(record.detail, default=str) if record.detail is not None else "",
        "host": record.host,
        "tool_version": record.tool_version,
    }


async def _insert_pg(dsn: str, record: AuditRecord, timeouts: PgTimeouts) -> None:
    import asyncpg

    from echoes_ops.client.postgres import open_postgres

    async with open_postgres(dsn, timeouts=timeouts) as conn:
        try:
            await conn.execute(
                "INSERT INTO echoes_ops.audit (at, operator, action, args, dry_run, result, "
                "detail, host, tool_version) VALUES (to_timestamp($1), $2, $3, $4::jsonb, $5, "
                "$6, $7::jsonb, $8, $9)",
                record.at,
                record.operator,
                record.action,
                json.dumps(record.args, default=str),
                record.dry_run,
                record.result,
                json.dumps(record.detail, default=str) if record.detail is not None else None,
                record.host,
                record.tool_version,
            )
        except asyncpg.UndefinedTableError:
            raise PostgresError(
                "table echoes_ops.audit does not exist", hint="run: echoes-ops db migrate"
            ) from None


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
    except BaseException as exc:
        record.result = "failed"
        record.detail = {**entry.detail, "error": str(exc) or type(exc).__name__}
        await log.write(record)
        raise
    record.detail = entry.detail or None
    await log.write(record)


async def read_audit(
    log: AuditLog, *, limit: int = 50, action: str | None = None
) -> tuple[str, list[AuditRecord]]:
    """Newest first, from PostgreSQL when configured, else from the Redis stream.
    Returns (source, records)."""
    if log.database_url:
        from echoes_ops.client.postgres import open_postgres

        async with open_postgres(log.database_url, timeouts=log.pg_timeouts) as conn:
            import asyncpg

            try:
                rows = await conn.fetch(
                    "SELECT id, extract(epoch FROM at) AS at, operator, action, args, dry_run, "
                    "result, detail, host, tool_version FROM echoes_ops.audit "
                    "WHERE ($1::text IS NULL OR action = $1 OR action LIKE $1 || '.%') "
                    "ORDER BY at DESC, id DESC LIMIT $2",
                    action,
                    limit,
                )
            except asyncpg.UndefinedTableError:
                raise PostgresError(
                    "table echoes_ops.audit does not exist", hint="run: echoes-ops db migrate"
                ) from None
        return "postgresql", [
            AuditRecord(
                at=float(row["at"]),
                operator=row["operator"],
                action=row["action"],
                args=json.loads(row["args"]) if row["args"] else {},
                dry_run=row["dry_run"],
                result=row["result"],
                detail=json.loads(row["detail"]) if row["detail"] else None,
                host=row["host"] or "",
                tool_version=row["tool_version"] or "",
                id=str(row["id"]),
            )
            for row in rows
        ]
    if log.redis is None:
        raise PostgresError("no audit source: set DATABASE_URL or make Redis reachable")
    records: list[AuditRecord] = []
    cursor = "+"
    while len(records) < limit:
        batch = await log.redis.xrevrange(keys.AUDIT_STREAM_KEY, max=cursor, count=500)
        if not batch:
            break
        for stream_id, fields in batch:
            record = _from_stream(str(stream_id), fields or {})
            if action is None or record.action == action or record.action.startswith(f"{action}."):
                records.append(record)
                if len(records) >= limit:
                    break
        cursor = f"({batch[-1][0]!s}"  # exclusive range: strictly older than the last seen
        if len(batch) < 500:
            break
    return "redis", records


def _from_stream(stream_id: str, fields: Mapping[Any, Any]) -> AuditRecord:
    def _json(text: str | None) -> Any:
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None

    return AuditRecord(
        at=float(fields.get("at", "0") or 0),
        operator=fields.get("operator", "?"),
        action=fields.get("action", "?"),
        args=_json(fields.get("args")) or {},
        dry_run=fields.get("dry_run") == "true",
        result=fields.get("result", "?"),
        detail=_json(fields.get("detail")),
        host=fields.get("host", ""),
        tool_version=fields.get("tool_version", ""),
        id=stream_id,
    )


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
) -> AsyncIterator[tuple[Redis, AuditEntry, AuditLog]]:
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
