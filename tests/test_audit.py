"""The audit trail in PostgreSQL and Redis, and `db migrate` (real servers)."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from echoes_ops.config import Secret
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.audit import redact_args
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA


async def latest_audit_row(dsn: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT * FROM echoes_ops.audit ORDER BY id DESC LIMIT 1")
    finally:
        await conn.close()


def test_redact_args_hides_secrets_and_url_passwords():
    args = redact_args(
        {
            "password": "hunter2",
            "api_token": "abc",
            "target": "redis://:hunter2@cache:6379/0",
            "reason": "maintenance",
            "secret": Secret("x"),
            "ids": ["a", "postgresql://u:pw@db/x"],
        }
    )
    text = json.dumps(args)
    assert "hunter2" not in text
    assert "abc" not in text
    assert ":pw@" not in text
    assert args["reason"] == "maintenance"
    assert args["target"] == "redis://:***@cache:6379/0"


def test_migrate_is_idempotent(database_url):
    env = {"DATABASE_URL": database_url}
    dry = cli("db", "migrate", "--dry-run", "--json", env=env)
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "current": 0,
        "applied": [],
        "pending": [1, 2, 3],
    }
    first = cli("db", "migrate", "--json", env=env)
    assert json.loads(first.stdout)["applied"] == [1, 2, 3]
    again = cli("db", "migrate", "--json", env=env)
    assert json.loads(again.stdout) == {
        "dry_run": False,
        "current": 3,
        "applied": [],
        "pending": [],
    }


def test_migrate_without_database_url_is_a_config_error():
    out = cli("db", "migrate")
    assert out.code == ExitCode.CONFIG
    assert "DATABASE_URL" in out.one_error_line()


def test_mutating_commands_are_audited_in_both_sinks(database_url, redis_url, sync_r):
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana"}
    assert cli("db", "migrate", env=env).code == 0
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), "--dry-run", env=env).code == 0
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    assert cli("cache", "invalidate", "location", "ruins", "--yes", env=env).code == 0

    out = cli("audit", "--json", env=env)
    report = json.loads(out.stdout)
    assert report["source"] == "postgresql"
    actions = [(r["action"], r["dry_run"], r["result"]) for r in report["records"]]
    assert actions == [
        ("cache.invalidate", False, "ok"),
        ("preload", False, "ok"),
        ("preload", True, "ok"),
    ]
    newest = report["records"][0]
    assert newest["operator"] == "dana"
    assert newest["args"]["ids"] == ["ruins"]
    assert newest["detail"] == {"deleted": 1}
    assert sync_r.xlen("echoes:audit") == 3

    only = json.loads(cli("audit", "--action", "preload", "--json", env=env).stdout)
    assert {r["action"] for r in only["records"]} == {"preload"}

    # without DATABASE_URL the Redis stream is read
    from_redis = json.loads(
        cli("audit", "--json", "--limit", "2", env={"REDIS_URL": redis_url}).stdout
    )
    assert from_redis["source"] == "redis"
    assert [r["action"] for r in from_redis["records"]] == ["cache.invalidate", "preload"]


def test_failure_with_redis_down_is_recorded_in_postgresql(database_url):
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ECHOES_OPS_OPERATOR": "erin",
    }
    assert cli("db", "migrate", env=env).code == 0
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    assert out.code == ExitCode.UNREACHABLE
    row = asyncio.run(latest_audit_row(database_url))
    assert row["action"] == "preload"
    assert row["result"] == "failed"
    assert row["operator"] == "erin"
    assert "connect" in json.loads(row["detail"])["error"].lower()


def test_unmigrated_database_warns_but_the_command_succeeds(database_url, redis_url, sync_r):
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    assert out.code == 0
    assert "echoes-ops db migrate" in out.stderr
    assert sync_r.xlen("echoes:audit") == 1  # the Redis sink still has it
