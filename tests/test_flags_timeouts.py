"""The emergency switch never hangs: with another session holding the REDIS_ENABLED row
(``SELECT ... FOR UPDATE`` left open), ``flags set`` gives up within its timeout, names the
blocking backend, exits 8 and is audited as failed; against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from echoes_ops.config import PgTimeouts, Settings
from echoes_ops.errors import ExitCode, PostgresError
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.migrations import migrate
from tests.cli_helpers import cli

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


@pytest.fixture
def migrated(database_url: str) -> str:
    asyncio.run(migrate(database_url))
    return database_url


async def _set_in_thread(env: dict[str, str]) -> tuple[object, float]:
    started = time.monotonic()
    out = await asyncio.to_thread(
        cli, "flags", "set", "REDIS_ENABLED", "false", "--reason", "x", "--yes", env=env
    )
    return out, time.monotonic() - started


async def test_flags_set_behind_a_held_row_fails_fast_naming_the_holder(migrated: str) -> None:
    holder = await asyncpg.connect(migrated, server_settings={"application_name": "incident-psql"})
    try:
        await holder.execute(
            "INSERT INTO echoes_ops.flags (name, value, updated_by) "
            "VALUES ('REDIS_ENABLED', 'true', 'test')"
        )
        transaction = holder.transaction()
        await transaction.start()
        await holder.fetchrow(
            "SELECT value FROM echoes_ops.flags WHERE name = 'REDIS_ENABLED' FOR UPDATE"
        )
        holder_pid = holder.get_server_pid()
        env = {
            "DATABASE_URL": migrated,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # Redis down too
            "ECHOES_OPS_OPERATOR": "dana",
            "ECHOES_OPS_FLAGS_TIMEOUT": "1",
        }
        out, elapsed = await _set_in_thread(env)
        await transaction.rollback()
    finally:
        await holder.close()

    assert out.code == ExitCode.BUSY, out.stderr  # type: ignore[attr-defined]
    line = out.one_error_line()  # type: ignore[attr-defined]
    assert elapsed < 1 + 3, elapsed  # the lock wait, a probe, and the start-up: never forever
    assert "REDIS_ENABLED is locked in PostgreSQL" in line
    assert f"pid {holder_pid}" in line
    assert "application 'incident-psql'" in line
    assert "its transaction open for" in line
    assert "gave up after 1s (lock_timeout), nothing changed" in line
    assert f"pg_terminate_backend({holder_pid})" in line

    conn = await asyncpg.connect(migrated)
    try:
        value = await conn.fetchval("SELECT value FROM echoes_ops.flags")
        audit = await conn.fetchrow("SELECT action, result, detail FROM echoes_ops.audit")
    finally:
        await conn.close()
    assert value == "true"  # nothing changed
    assert (audit["action"], audit["result"]) == ("flags.set", "failed")
    assert f"pid {holder_pid}" in audit["detail"]

    # the row free again: the same command goes through
    env.pop("ECHOES_OPS_FLAGS_TIMEOUT")
    out, _ = await _set_in_thread(env)
    assert out.code == 0, out.stderr  # type: ignore[attr-defined]


async def test_every_connection_carries_statement_and_lock_timeouts(migrated: str) -> None:
    from echoes_ops.client.postgres import connect_postgres, open_postgres

    settings = Settings.load(
        env={
            "DATABASE_URL": migrated,
            "ECHOES_OPS_PG_STATEMENT_TIMEOUT": "0.5",
            "ECHOES_OPS_PG_LOCK_TIMEOUT": "0.25",
        }
    )
    assert settings.pg_timeouts() == PgTimeouts(statement=0.5, lock=0.25)
    assert settings.flag_timeouts() == PgTimeouts(statement=6.0, lock=3.0)
    conn = await connect_postgres(migrated, timeouts=settings.pg_timeouts())
    try:
        assert await conn.fetchval("SHOW statement_timeout") == "500ms"
        assert await conn.fetchval("SHOW lock_timeout") == "250ms"
        assert await conn.fetchval("SHOW application_name") == "echoes-ops"
    finally:
        await conn.close()
    started = time.monotonic()
    with pytest.raises(PostgresError, match=r"statement cancelled after 0\.5s"):
        async with open_postgres(migrated, timeouts=settings.pg_timeouts()) as conn:
            await conn.execute("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 5
