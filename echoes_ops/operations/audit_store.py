"""Audit records in their two stores: the capped Redis stream and the PostgreSQL table.

Each record carries a ``record_id`` (random, made when the record is) that both stores keep,
so storing a record twice is a no-op (``ON CONFLICT (record_id) DO NOTHING``). A record the
stream took while PostgreSQL did not is named in the set ``echoes:audit:unsynced`` (by its
stream id) and copied into PostgreSQL by the next write or ``audit`` read that reaches
both; see docs/cli.md (audit).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from echoes_ops import __version__
from echoes_ops.client.connect import AnyRedis
from echoes_ops.config import PgTimeouts
from echoes_ops.contract import keys
from echoes_ops.errors import PostgresError
from echoes_ops.operations import identity

COPY_BATCH = 500  # unsynced records copied per PostgreSQL round trip
MIGRATE_HINT = "run: echoes-ops db migrate"


def new_record_id() -> str:
    return uuid.uuid4().hex


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
    id: str | None = None  # where it was read from: the table's id, or the stream id
    record_id: str = field(default_factory=new_record_id)  # the same in both stores
    # who ran it, for real (operations/identity.py); ``operator`` is only what they declared
    os_user: str = field(default_factory=identity.os_user)
    sudo_user: str = field(default_factory=identity.sudo_user)
    redis_user: str = ""  # ACL WHOAMI of the connection that ran it ("" when unknown)
    pg_user: str = ""  # PostgreSQL's session_user for the stored row (set by the server)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_fields(record: AuditRecord) -> Any:
    return {
        "at": f"{record.at:.6f}",
        "operator": record.operator,
        "action": record.action,
        "args": json.dumps(record.args, default=str),
        "dry_run": "true" if record.dry_run else "false",
        "result": record.result,
        "detail": json.dumps(record.detail, default=str) if record.detail is not None else "",
        "host": record.host,
        "tool_version": record.tool_version,
        "record_id": record.record_id,
        "os_user": record.os_user,
        "sudo_user": record.sudo_user,
        "redis_user": record.redis_user,
    }


def from_stream(stream_id: str, fields: Mapping[Any, Any]) -> AuditRecord:
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
        # a record written before record ids existed: its stream id is unique too
        record_id=fields.get("record_id") or f"stream:{stream_id}",
        # a record written before identities were recorded: unknown, never this process's
        os_user=fields.get("os_user", ""),
        sudo_user=fields.get("sudo_user", ""),
        redis_user=fields.get("redis_user", ""),
    )


def from_row(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
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
        record_id=row["record_id"] or f"pg:{row['id']}",
        os_user=row["os_user"] or "",
        sudo_user=row["sudo_user"] or "",
        redis_user=row["redis_user"] or "",
        pg_user=row["pg_user"] or "",
    )


def schema_error(exc: BaseException) -> PostgresError | None:
    """The one-line error for a table or column that ``db migrate`` creates, else None."""
    import asyncpg

    if isinstance(exc, asyncpg.UndefinedTableError):
        return PostgresError("table echoes_ops.audit does not exist", hint=MIGRATE_HINT)
    if isinstance(exc, asyncpg.UndefinedColumnError | asyncpg.InvalidColumnReferenceError):
        return PostgresError(
            "table echoes_ops.audit is older than this echoes-ops (no record ids or identities)",
            hint=MIGRATE_HINT,
        )
    return None


async def insert_postgres(dsn: str, records: list[AuditRecord], timeouts: PgTimeouts) -> int:
    """Store ``records`` in PostgreSQL in one round trip; a record already there (same
    ``record_id``) is left as it is. Returns how many were new."""
    import asyncpg

    from echoes_ops.client.postgres import open_postgres

    rows = [
        (
            r.record_id,
            r.at,
            r.operator,
            r.action,
            json.dumps(r.args, default=str),
            r.dry_run,
            r.result,
            json.dumps(r.detail, default=str) if r.detail is not None else None,
            r.host,
            r.tool_version,
            r.os_user,
            r.sudo_user,
            r.redis_user,
        )
        for r in records
    ]
    async with open_postgres(dsn, timeouts=timeouts) as conn:
        try:
            inserted = await conn.fetch(
                "INSERT INTO echoes_ops.audit (record_id, at, operator, action, args, dry_run, "
                "result, detail, host, tool_version, os_user, sudo_user, redis_user) "
                "SELECT r.record_id, to_timestamp(r.at), r.operator, r.action, r.args::jsonb, "
                "r.dry_run, r.result, r.detail::jsonb, r.host, r.tool_version, "
                "nullif(r.os_user, ''), nullif(r.sudo_user, ''), nullif(r.redis_user, '') "
                "FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], "
                "$6::bool[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
                "$12::text[], $13::text[]) "
                "AS r(record_id, at, operator, action, args, dry_run, result, detail, host, "
                "tool_version, os_user, sudo_user, redis_user) "
                "ON CONFLICT (record_id) DO NOTHING RETURNING id",
                *[list(column) for column in zip(*rows, strict=True)],
            )
        except asyncpg.PostgresError as exc:
            raise schema_error(exc) or exc from None
    return len(inserted)


async def keep_unsynced(r: AnyRedis, stream_id: str) -> None:
    """Name a stream record PostgreSQL did not take, for :func:`copy_unsynced`."""
    await r.sadd(keys.AUDIT_UNSYNCED_KEY, stream_id)


async def copy_unsynced(r: AnyRedis, dsn: str, timeouts: PgTimeouts) -> int:
    """Copy the records the stream took while PostgreSQL did not into PostgreSQL, then
    forget them; idempotent (a record already copied is not copied twice), safe to run from
    several processes at once. Returns how many were copied. Raises
    :class:`PostgresError` (nothing forgotten) when PostgreSQL still fails."""
    copied = 0
    while True:
        raw = await r.srandmember(keys.AUDIT_UNSYNCED_KEY, COPY_BATCH)
        ids = [str(i) for i in cast(list[str], raw or [])]
        if not ids:
            return copied
        pipe = r.pipeline(transaction=False)
        for stream_id in ids:
            pipe.xrange(keys.AUDIT_STREAM_KEY, min=stream_id, max=stream_id, count=1)
        found = await pipe.execute()
        records = [from_stream(str(entry[0][0]), entry[0][1]) for entry in found if entry]
        if records:
            copied += await insert_postgres(dsn, records, timeouts)
        # copied, or trimmed from the capped stream meanwhile (nothing left to copy)
        await r.srem(keys.AUDIT_UNSYNCED_KEY, *ids)
        if len(ids) < COPY_BATCH:
            return copied
