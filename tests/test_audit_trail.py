"""The audit trail loses nothing: records written while PostgreSQL is down are copied into
it when it is back (once, by record id), ``audit`` reads the Redis stream meanwhile and says
so, and the filters (--since, --operator, --result, --all, --follow). Real PostgreSQL (the
fixture's server, stopped and started) and real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import asyncpg
import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.operations.audit import AuditLog, AuditRecord
from tests.cli_helpers import cli

pytestmark = pytest.mark.timeout(120)


async def pg_actions(dsn: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT action, record_id FROM echoes_ops.audit ORDER BY at, id")
    finally:
        await conn.close()
    return [(r["action"], r["record_id"]) for r in rows]


def test_records_written_while_postgresql_is_down_reach_it_when_it_is_back(
    pg_server, database_url, private_redis
):
    private_redis.start()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": private_redis.url,
        "ECHOES_OPS_OPERATOR": "dana",
    }
    assert cli("db", "migrate", env=env).code == 0
    stream = redis.Redis.from_url(private_redis.url, decode_responses=True)
    pg_server.stop()
    try:
        held = cli("locks", "hold", "spawn_manager", "--ttl", "10m", "--reason", "db down", env=env)
        assert held.code == 0, held.stderr
        assert "not stored in PostgreSQL" in held.stderr
        assert "copied into PostgreSQL once PostgreSQL answers" in held.stderr
        assert stream.scard(keys.AUDIT_UNSYNCED_KEY) == 1

        down = cli("audit", "--json", env=env)
        assert down.code == 0, down.stderr
        report = json.loads(down.stdout)
        assert report["source"] == "redis"
        assert "PostgreSQL could not be read" in report["note"]
        assert "PostgreSQL could not be read" in down.stderr  # said, not only in the JSON
        assert [r["action"] for r in report["records"]] == ["locks.hold"]
        record_id = report["records"][0]["record_id"]
    finally:
        pg_server.start()

    # the next write reaching both copies the earlier record in
    released = cli("locks", "release", "spawn_manager", env=env)
    assert released.code == 0, released.stderr
    assert "not stored" not in released.stderr
    actions = asyncio.run(pg_actions(database_url))
    assert [a for a, _ in actions] == ["locks.hold", "locks.release"]
    assert actions[0][1] == record_id  # the same record, not a copy with a new id
    assert stream.scard(keys.AUDIT_UNSYNCED_KEY) == 0

    # copying again (another process marked it meanwhile) adds nothing
    hold_stream_id = stream.xrange(keys.AUDIT_STREAM_KEY, count=1)[0][0]
    stream.sadd(keys.AUDIT_UNSYNCED_KEY, hold_stream_id)
    back = json.loads(cli("audit", "--json", env=env).stdout)
    assert back["source"] == "postgresql"
    assert back["note"] is None
    assert [r["action"] for r in back["records"]] == ["locks.release", "locks.hold"]
    assert len(asyncio.run(pg_actions(database_url))) == 2

    # Redis restarted (no persistence): the stream is gone, PostgreSQL has everything
    private_redis.stop()
    private_redis.start()
    after = json.loads(cli("audit", "--json", env=env).stdout)
    assert [r["action"] for r in after["records"]] == ["locks.release", "locks.hold"]
    stream.close()


def test_postgresql_down_before_migrate_keeps_records_until_the_table_exists(
    database_url, redis_url, sync_r
):
    """The table is made by db migrate, never by a read or a write: until then records
    wait in the stream, and are copied by the first write after the migration."""
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    early = cli("broadcast", "player", "5", "hello", env=env)
    assert early.code == 0, early.stderr
    assert "echoes-ops db migrate" in early.stderr
    assert sync_r.scard(keys.AUDIT_UNSYNCED_KEY) == 1
    shown = cli("audit", "--json", env=env)
    assert json.loads(shown.stdout)["source"] == "redis"
    assert "db migrate" in shown.stderr

    async def table_exists() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval("SELECT to_regclass('echoes_ops.audit')") is not None
        finally:
            await conn.close()

    assert asyncio.run(table_exists()) is False  # audit read it without creating it
    assert cli("db", "migrate", env=env).code == 0
    assert json.loads(cli("audit", "--json", env=env).stdout)["copied_to_postgresql"] == 1
    assert [a for a, _ in asyncio.run(pg_actions(database_url))] == ["broadcast.player"]


async def write_records(log: AuditLog) -> None:
    now = time.time()
    for at, operator, action, result in (
        (now - 3 * 3600, "alice", "preload", "ok"),
        (now - 600, "bob", "sessions.kick", "ok"),
        (now - 300, "bob", "locks.hold", "failed"),
        (now - 120, "cron", "warmup", "ok"),
        (now - 60, "alice", "reconcile.fix", "interrupted"),
    ):
        await log.write(AuditRecord(at, operator, action, {"via": "cli"}, False, result))


@pytest.mark.parametrize("source", ["postgresql", "redis"])
def test_filters(source, database_url, redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    if source == "postgresql":
        env["DATABASE_URL"] = database_url
        assert cli("db", "migrate", env=env).code == 0

    async def fill() -> None:
        r = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            await write_records(AuditLog("x", redis=r, database_url=env.get("DATABASE_URL")))
        finally:
            await r.aclose()

    asyncio.run(fill())

    def actions(*args: str) -> list[str]:
        out = cli("audit", "--json", *args, env=env)
        assert out.code == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["source"] == source
        return [r["action"] for r in report["records"]]

    assert actions() == ["reconcile.fix", "locks.hold", "sessions.kick", "preload"]
    assert actions("--all")[:2] == ["reconcile.fix", "warmup"]
    assert actions("--action", "warmup") == ["warmup"]
    assert actions("--since", "1h") == ["reconcile.fix", "locks.hold", "sessions.kick"]
    assert actions("--operator", "bob") == ["locks.hold", "sessions.kick"]
    assert actions("--result", "failed") == ["locks.hold"]
    assert actions("--operator", "alice", "--since", "1h") == ["reconcile.fix"]
    human = cli("audit", env=env)
    assert "warmup runs hidden (--all shows them)" in " ".join(human.stdout.split())
    bad = cli("audit", "--result", "maybe", env=env)
    assert bad.code == 2
    assert "--result must be one of ok, failed, interrupted" in bad.one_error_line()
    bad_since = cli("audit", "--since", "yesterday-ish", env=env)
    assert bad_since.code == 2
    assert "--since" in bad_since.one_error_line()


def test_follow_prints_new_records_as_they_land(redis_url, sync_r):
    env = {**os.environ, "REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "erin"}
    assert cli("broadcast", "player", "7", "first", env={"REDIS_URL": redis_url}).code == 0
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from echoes_ops.cli.main import main; main()",
            "audit",
            "--follow",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # each readline blocks until a record is printed (the test's timeout bounds it)
        assert json.loads(proc.stdout.readline())["args"]["message"] == "first"
        assert cli("broadcast", "player", "7", "hi there", env={"REDIS_URL": redis_url}).code == 0
        record = json.loads(proc.stdout.readline())
        assert record["action"] == "broadcast.player"
        assert record["args"]["message"] == "hi there"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
