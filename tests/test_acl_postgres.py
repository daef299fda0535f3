"""``acl postgres``: the GRANT script applied to a real PostgreSQL, and the tool run as login
roles that are members of echoes_ops_reader / _operator / _warmup. What a role may do works;
what it may not is the clean permission line (exit 6) and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from echoes_ops.errors import ExitCode
from echoes_ops.local.postgres_server import BOOTSTRAP_SUPERUSER
from tests.cli_helpers import cli
from tests.warmup_helpers import sql

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def as_login(dsn: str, login: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


@pytest.fixture
def granted(database_url: str) -> dict[str, str]:
    """Migrated, the GRANT script applied (twice: it is idempotent), and one login role per
    group role; returns their DATABASE_URLs."""
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    out = cli("acl", "postgres")
    assert out.code == 0
    script = out.stdout

    async def apply() -> None:
        conn = await asyncpg.connect(as_login(database_url, BOOTSTRAP_SUPERUSER))
        try:
            await conn.execute(script)
            await conn.execute(script)
            for login, group in (
                ("ann_reader", "echoes_ops_reader"),
                ("otto_operator", "echoes_ops_operator"),
                ("wendy_warmup", "echoes_ops_warmup"),
            ):
                await conn.execute(
                    f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') "
                    f"THEN CREATE ROLE {login} LOGIN; END IF; END $$; GRANT {group} TO {login}"
                )
        finally:
            await conn.close()

    asyncio.run(apply())
    return {
        "reader": as_login(database_url, "ann_reader"),
        "operator": as_login(database_url, "otto_operator"),
        "warmup": as_login(database_url, "wendy_warmup"),
    }


def flags_set(dsn: str, value: str) -> Any:
    return cli(
        *("flags", "set", "REDIS_ENABLED", value, "--reason", "test", "--yes"),
        env={"DATABASE_URL": dsn, "REDIS_URL": "redis://127.0.0.1:1/0"},
    )


def test_reader_reads_flags_and_audit_and_may_not_write(granted, database_url):
    env = {"DATABASE_URL": granted["reader"]}
    assert cli("flags", "list", env=env).code == 0
    assert cli("flags", "get", "REDIS_ENABLED", env=env).code == 0
    assert cli("audit", env=env).code == 0
    out = flags_set(granted["reader"], "false")
    assert out.code == ExitCode.PERMISSION, out.stderr
    line = out.one_error_line()
    assert "permission denied for table flags" in line
    assert sql(database_url, "SELECT * FROM echoes_ops.flags") == []


def test_operator_sets_flags_and_appends_audit_but_never_rewrites_it(granted, database_url):
    out = flags_set(granted["operator"], "false")
    assert out.code == 0, out.stderr
    rows = sql(database_url, "SELECT value, updated_by FROM echoes_ops.flags")
    assert [r["value"] for r in rows] == ["false"]
    audit = sql(database_url, "SELECT action, result FROM echoes_ops.audit")
    assert ("flags.set", "ok") in [(r["action"], r["result"]) for r in audit]
    for statement in ("UPDATE echoes_ops.audit SET result = 'ok'", "DELETE FROM echoes_ops.audit"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            sql(granted["operator"], statement)
    assert len(sql(database_url, "SELECT id FROM echoes_ops.audit")) == len(audit)


def test_warmup_appends_audit_records_and_may_not_set_flags(granted, database_url):
    sql(
        granted["warmup"],
        "INSERT INTO echoes_ops.audit (at, operator, action, result) "
        "VALUES (now(), 'cron', 'warmup', 'ok')",
    )
    out = flags_set(granted["warmup"], "false")
    assert out.code == ExitCode.PERMISSION
    assert "permission denied" in out.one_error_line()
    assert sql(database_url, "SELECT * FROM echoes_ops.flags") == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        sql(granted["warmup"], "DELETE FROM echoes_ops.audit")


def test_no_role_may_change_the_schema(granted):
    for dsn in granted.values():
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            sql(dsn, "CREATE TABLE echoes_ops.mine (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            sql(dsn, "DROP TABLE echoes_ops.audit")
