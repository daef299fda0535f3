"""Reading the audit trail back: PostgreSQL when it answers (after copying in what the
Redis stream kept while it did not), else the Redis stream, saying so."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode, OpsError, PostgresError
from echoes_ops.operations.audit import AuditLog
from echoes_ops.operations.audit_store import (
    AuditRecord,
    copy_unsynced,
    from_row,
    from_stream,
    schema_error,
)

ROUTINE_ACTIONS: tuple[str, ...] = ("warmup",)  # cron runs, hidden unless asked for
RESULTS: tuple[str, ...] = ("ok", "failed", "interrupted")
STREAM_BATCH = 500


class AuditArgumentError(OpsError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class AuditQuery:
    """Which records: newest first, at most ``limit``."""

    limit: int = 50
    action: str | None = None  # this action or its sub-actions (locks: locks.hold, ...)
    operator: str | None = None  # the declared operator
    user: str | None = None  # an authenticated identity: OS, sudo, Redis ACL or PostgreSQL user
    result: str | None = None  # ok, failed, interrupted
    since: float | None = None  # epoch seconds: only records at or after
    routine: bool = False  # include routine cron runs (warmup) without --action naming them

    def __post_init__(self) -> None:
        if self.result is not None and self.result not in RESULTS:
            raise AuditArgumentError(
                f"--result must be one of {', '.join(RESULTS)}, got {self.result!r}"
            )

    @property
    def hidden(self) -> list[str]:
        return [] if self.routine or self.action is not None else list(ROUTINE_ACTIONS)

    def matches(self, record: AuditRecord) -> bool:
        action = record.action
        return (
            (self.action is None or action == self.action or action.startswith(f"{self.action}."))
            and (self.operator is None or record.operator == self.operator)
            and (self.user is None or self.user in record_users(record))
            and (self.result is None or record.result == self.result)
            and (self.since is None or record.at >= self.since)
            and action not in self.hidden
        )


def record_users(record: AuditRecord) -> set[str]:
    """The authenticated identities a record names (``--user`` matches any of them)."""
    names = {record.os_user, record.sudo_user, record.redis_user, record.pg_user}
    return {name for name in names if name}


@dataclass
class AuditRead:
    source: str  # "postgresql" or "redis"
    records: list[AuditRecord]
    note: str = ""  # why the stream was read, or what could not be done
    copied: int = 0  # records copied from the stream into PostgreSQL first

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "note": self.note or None,
            "copied_to_postgresql": self.copied,
            "records": [r.as_dict() for r in self.records],
        }


def parse_since(text: str, *, now: float | None = None) -> float:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``1h30m``) or a local
    date and time (``2026-12-06 01:30``, ISO 8601, with or without a zone)."""
    from echoes_ops.operations.broadcast import parse_duration

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except OpsError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise AuditArgumentError(
            f"--since: cannot read {text!r}: use a duration (30m, 2h, 1h30m) or a date and "
            "time (2026-12-06 01:30)"
        ) from None


async def read_audit(log: AuditLog, query: AuditQuery) -> AuditRead:
    """Newest first. From PostgreSQL when ``DATABASE_URL`` is set and it answers, after
    copying in the records the stream kept while it did not; else from the Redis stream,
    with a note saying why."""
    problem: PostgresError | None = None
    if log.database_url:
        try:
            copied = 0
            if log.redis is not None:
                copied = await copy_unsynced(log.redis, log.database_url, log.pg_timeouts)
            records = await _from_postgres(log, query)
            return AuditRead("postgresql", records, copied=copied)
        except PostgresError as exc:
            problem = exc
        except (RedisError, OSError) as exc:  # Redis failed while copying: PostgreSQL may not
            records = await _from_postgres(log, query)
            return AuditRead("postgresql", records, note=f"not copied from Redis: {exc}")
    if log.redis is None:
        if problem is not None:
            raise problem
        raise PostgresError("no audit source: set DATABASE_URL or make Redis reachable")
    records = await _from_stream(log, query)
    note = ""
    if problem is not None:
        note = (
            f"PostgreSQL could not be read ({problem}): these are the Redis stream's records "
            f"(its last {keys.AUDIT_STREAM_MAXLEN:,} at most)"
        )
    return AuditRead("redis", records, note)


async def _from_postgres(log: AuditLog, query: AuditQuery) -> list[AuditRecord]:
    import asyncpg

    from echoes_ops.client.postgres import open_postgres

    assert log.database_url is not None
    async with open_postgres(log.database_url, timeouts=log.pg_timeouts) as conn:
        try:
            rows = await conn.fetch(
                "SELECT id, record_id, extract(epoch FROM at) AS at, operator, action, args, "
                "dry_run, result, detail, host, tool_version, os_user, sudo_user, redis_user, "
                "pg_user FROM echoes_ops.audit "
                "WHERE ($1::text IS NULL OR action = $1 OR action LIKE $1 || '.%') "
                "AND ($2::text IS NULL OR operator = $2) "
                "AND ($3::text IS NULL OR result = $3) "
                "AND ($4::float8 IS NULL OR at >= to_timestamp($4)) "
                "AND NOT (action = ANY($5::text[])) "
                "AND ($7::text IS NULL OR $7 IN (os_user, sudo_user, redis_user, pg_user)) "
                "ORDER BY at DESC, id DESC LIMIT $6",
                query.action,
                query.operator,
                query.result,
                query.since,
                query.hidden,
                query.limit,
                query.user,
            )
        except asyncpg.PostgresError as exc:
            raise schema_error(exc) or exc from None
    return [from_row(row) for row in rows]


async def _from_stream(log: AuditLog, query: AuditQuery) -> list[AuditRecord]:
    r = log.client()
    records: list[AuditRecord] = []
    cursor = "+"
    while len(records) < query.limit:
        batch = await r.xrevrange(keys.AUDIT_STREAM_KEY, max=cursor, count=STREAM_BATCH)
        if not batch:
            break
        for stream_id, fields in batch:
            if query.since is not None and _added_ms(str(stream_id)) < query.since * 1000:
                return records  # added before --since, so written before: none older matches
            record = from_stream(str(stream_id), fields or {})
            if query.matches(record):
                records.append(record)
                if len(records) >= query.limit:
                    break
        cursor = f"({batch[-1][0]!s}"  # exclusive range: strictly older than the last seen
        if len(batch) < STREAM_BATCH:
            break
    return records


def _added_ms(stream_id: str) -> int:
    """When the stream took an entry (the first part of its id, epoch milliseconds)."""
    return int(stream_id.split("-", 1)[0])
