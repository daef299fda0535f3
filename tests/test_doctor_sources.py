"""`echoes-ops doctor`'s REDIS_ENABLED sources against a real PostgreSQL, and doctor beside
the reference worker (split from test_doctor.py, which holds the configuration checks)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.errors import ExitCode
from echoes_ops.operations import doctor as ops
from tests.cli_helpers import cli
from tests.doctor_helpers import GOOD_CONFIG, client, doctor, live_worker, server_now
from tests.runtime_helpers import make_worker, session

__all__ = ["client"]  # the fixture, used by name


# -- REDIS_ENABLED sources with a real PostgreSQL ---------------------------------------------


async def _set_flag(dsn: str, value: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO echoes_ops.flags (name, value, updated_by) VALUES ('REDIS_ENABLED', $1, "
            "'test') ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            value,
        )
    finally:
        await conn.close()


def source(check: dict[str, Any], name: str) -> dict[str, Any]:
    """One source of the REDIS_ENABLED check's details (a flag_status reading)."""
    return next(s for s in check["details"]["sources"] if s["source"] == name)


@pytest.mark.postgres
def test_redis_enabled_against_postgresql(private_redis, client, database_url, tmp_path):
    c = client()
    url = private_redis.url
    env = {"DATABASE_URL": database_url}
    named = live_worker(url, c, "w1", server_now(c), mode="redis", redis_enabled="true")
    try:
        # no table yet: PostgreSQL cannot say, which is worth a warning, not a failure
        _, checks = doctor(url, env=env)
        postgres = source(checks["redis_enabled"], "postgresql")
        assert postgres["state"] == "error"
        assert "db migrate" in postgres["detail"]
        assert checks["redis_enabled"]["verdict"] == "warn"

        assert cli("db", "migrate", env=env).code == 0
        asyncio.run(_set_flag(database_url, "false"))
        # PostgreSQL says false, a live worker still runs on Redis: split
        code, checks = doctor(url, env=env)
        assert checks["redis_enabled"]["verdict"] == "fail"
        assert "have not applied REDIS_ENABLED=false: w1" in checks["redis_enabled"]["summary"]
        assert code == ExitCode.PROBLEMS_FOUND

        asyncio.run(_set_flag(database_url, "true"))
        env_file = tmp_path / "app.env"
        env_file.write_text("REDIS_ENABLED=false\n")
        _, checks = doctor(url, env={**env, "ECHOES_OPS_ENV_FILE": str(env_file)})
        assert checks["redis_enabled"]["verdict"] == "warn"  # a restart would flip them
        assert "sources disagree" in checks["redis_enabled"]["summary"]
    finally:
        named.close()


def test_postgresql_unreachable_is_unknown_not_fatal(private_redis, client):
    client()
    _, checks = doctor(
        private_redis.url, env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    )
    postgres = source(checks["redis_enabled"], "postgresql")
    assert postgres["state"] == "unreachable"
    assert "cannot connect to PostgreSQL" in postgres["detail"]


# -- with the reference worker ------------------------------------------------------------------


async def test_doctor_with_a_running_reference_worker(private_redis):
    private_redis.extra_args = GOOD_CONFIG
    private_redis.start()
    url = private_redis.url
    worker = make_worker(url, "w1")
    await worker.start()
    try:
        await worker.connect_player(session(5, "overpass"))
        async with open_redis(Settings.from_dsn(url).redis_target()) as r:
            report = await ops.doctor(r, gamedata=None, gamedata_problem="not given")
    finally:
        await worker.stop()
    checks = {c.id: c for c in report.checks}
    assert checks["clock_skew"].verdict == "ok"
    assert abs(checks["clock_skew"].details["workers"]["w1"]["offset_s"]) < 1.0
    assert checks["dead_workers"].verdict == "ok"
    assert checks["keys_without_ttl"].verdict == "ok"
    assert checks["redis_enabled"].details["worker_values"] == {"true": 1}
    assert checks["redis_enabled"].details["modes"] == "1/1 workers redis"
    assert checks["static_data"].verdict == "fail"  # nothing preloaded
