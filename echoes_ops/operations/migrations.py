"""Tables of ours in PostgreSQL (schema ``echoes_ops``), created by ``echoes-ops db migrate``.

Never created implicitly by a read. Each migration is idempotent and recorded in
``echoes_ops.schema_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from echoes_ops.client.postgres import DEFAULT_TIMEOUTS, open_postgres
from echoes_ops.config import PgTimeouts

SCHEMA: Final = "echoes_ops"
FLAGS_CHANNEL: Final = "echoes_ops_flags"  # NOTIFY channel for flag changes

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "flags and audit tables",
        f"""
        CREATE SCHEMA IF NOT EXISTS {SCHEMA};
        CREATE TABLE IF NOT EXISTS {SCHEMA}.flags (
            name text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            updated_by text NOT NULL,
            reason text NOT NULL DEFAULT ''
        );
        CREATE TABLE IF NOT EXISTS {SCHEMA}.audit (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL,
            operator text NOT NULL,
            action text NOT NULL,
            args jsonb NOT NULL DEFAULT '{{}}',
            dry_run boolean NOT NULL DEFAULT false,
            result text NOT NULL,
            detail jsonb,
            host text,
            tool_version text
        );
        CREATE INDEX IF NOT EXISTS audit_at_idx ON {SCHEMA}.audit (at DESC);
        CREATE INDEX IF NOT EXISTS audit_action_idx ON {SCHEMA}.audit (action, at DESC);
        CREATE OR REPLACE FUNCTION {SCHEMA}.notify_flag() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{FLAGS_CHANNEL}', json_build_object(
                'name', NEW.name, 'value', NEW.value, 'updated_by', NEW.updated_by,
                'updated_at', extract(epoch FROM NEW.updated_at))::text);
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS flags_notify ON {SCHEMA}.flags;
        CREATE TRIGGER flags_notify AFTER INSERT OR UPDATE ON {SCHEMA}.flags
            FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.notify_flag();
        """,
    ),
    (
        2,
        "audit record ids (the same in the Redis stream and here: copies are idempotent)",
        f"""
        ALTER TABLE {SCHEMA}.audit ADD COLUMN IF NOT EXISTS record_id text;
        CREATE UNIQUE INDEX IF NOT EXISTS audit_record_id_idx ON {SCHEMA}.audit (record_id);
        CREATE INDEX IF NOT EXISTS audit_operator_idx ON {SCHEMA}.audit (operator, at DESC);
        """,
    ),
    (
        3,
        "audit identities: OS user, sudo user, Redis ACL user, and the PostgreSQL session user "
        "stamped by the server",
        f"""
        ALTER TABLE {SCHEMA}.audit ADD COLUMN IF NOT EXISTS os_user text;
        ALTER TABLE {SCHEMA}.audit ADD COLUMN IF NOT EXISTS sudo_user text;
        ALTER TABLE {SCHEMA}.audit ADD COLUMN IF NOT EXISTS redis_user text;
        ALTER TABLE {SCHEMA}.audit ADD COLUMN IF NOT EXISTS pg_user text;
        -- the server says who stored a row; whatever the client sent is overwritten
        CREATE OR REPLACE FUNCTION {SCHEMA}.audit_stamp_pg_user() RETURNS trigger AS $$
        BEGIN
            NEW.pg_user := session_user;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS audit_stamp_pg_user ON {SCHEMA}.audit;
        CREATE TRIGGER audit_stamp_pg_user BEFORE INSERT OR UPDATE ON {SCHEMA}.audit
            FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.audit_stamp_pg_user();
        """,
    ),
)


@dataclass
class MigrateResult:
    dry_run: bool
    current: int
    applied: list[int]
    pending: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "current": self.current,
            "applied": self.applied,
            "pending": self.pending,
        }


async def current_version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{SCHEMA}.schema_version")
    if exists is None:
        return 0
    return int(
        await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version")
    )


async def migrate(
    dsn: str, *, dry_run: bool = False, timeouts: PgTimeouts = DEFAULT_TIMEOUTS
) -> MigrateResult:
    """Apply pending migrations, each in its own transaction."""
    async with open_postgres(dsn, timeouts=timeouts) as conn:
        current = await current_version(conn)
        pending = [number for number, _, _ in MIGRATIONS if number > current]
        if dry_run or not pending:
            return MigrateResult(dry_run=dry_run, current=current, applied=[], pending=pending)
        applied = []
        for number, _title, sql in MIGRATIONS:
            if number <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
                    "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_version (version) VALUES ($1)", number
                )
            applied.append(number)
        return MigrateResult(dry_run=False, current=applied[-1], applied=applied, pending=[])
