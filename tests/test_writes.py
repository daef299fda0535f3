"""One audited write for both faces: the CLI and the dashboard call the same functions of
``operations/writes.py`` and leave the same audit record but for ``via`` (real Redis and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
import redis

from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.tui.model import BroadcastDraft
from echoes_ops.tui.source import RedisSource
from tests.cli_helpers import Outcome, cli

OPERATOR = "robin"
# differ by nature between two runs: when, and the lock's unique token / the message id
VOLATILE = {"at", "id", "record_id"}


async def acli(*args: str, env: dict[str, str]) -> Outcome:
    """The CLI runs its own event loop: run it off this test's loop."""
    return await asyncio.to_thread(cli, *args, env=env)


def newest(sync_r: redis.Redis) -> dict[str, Any]:
    ((_, fields),) = sync_r.xrevrange(keys.AUDIT_STREAM_KEY, count=1)
    return {
        "action": fields["action"],
        "operator": fields["operator"],
        "args": json.loads(fields["args"]),
        "dry_run": fields["dry_run"],
        "result": fields["result"],
        "detail": json.loads(fields["detail"]) if fields["detail"] else None,
    }


def but_via(record: dict[str, Any], via: str) -> dict[str, Any]:
    assert record["args"].pop("via") == via
    return record


def player(sync_r: redis.Redis, cid: int) -> None:
    sync_r.hset(
        keys.session_key(cid),
        mapping={"worker_id": "w1", "location_id": "ruins", "username": "Wren"},
    )
    sync_r.sadd(keys.presence_key("ruins"), cid)


@pytest.fixture
async def dashboard(redis_url: str, database_url: str):
    source = RedisSource(
        Settings.from_dsn(redis_url).with_overrides(operator=OPERATOR, database_url=database_url)
    )
    yield source
    await source.close()


async def test_cli_and_dashboard_records_are_identical_but_for_via(
    redis_url: str, database_url: str, sync_r: redis.Redis, dashboard: RedisSource
) -> None:
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "ECHOES_OPS_OPERATOR": OPERATOR}
    assert (await acli("db", "migrate", env=env)).code == 0

    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []

    player(sync_r, 42)
    assert (await acli("sessions", "kick", "42", "--reason", "stuck", "--yes", env=env)).code == 0
    by_cli = but_via(newest(sync_r), "cli")
    player(sync_r, 42)
    await dashboard.kick(42, "stuck")
    pairs.append((by_cli, but_via(newest(sync_r), "dashboard")))

    # the hold modal takes the CLI's durations: the same text, parsed by the same function
    hold = ("locks", "hold", "spawn_manager", "--ttl", "1h30m", "--reason", "event")
    assert (await acli(*hold, env=env)).code == 0
    by_cli = but_via(newest(sync_r), "cli")
    assert (await acli("locks", "release", "spawn_manager", env=env)).code == 0
    by_cli_release = but_via(newest(sync_r), "cli")
    await dashboard.hold_lock("spawn_manager", "1h30m", "event")
    by_dashboard = but_via(newest(sync_r), "dashboard")
    assert by_cli["detail"]["ttl_ms"] == by_dashboard["detail"]["ttl_ms"] == 5_400_000
    for record in (by_cli, by_dashboard):
        record["detail"]["value"] = "<token>"
    pairs.append((by_cli, by_dashboard))
    await dashboard.release_lock("spawn_manager")
    by_dashboard_release = but_via(newest(sync_r), "dashboard")
    for record in (by_cli_release, by_dashboard_release):
        record["detail"]["value"] = "<token>"
    pairs.append((by_cli_release, by_dashboard_release))

    assert (await acli("broadcast", "global", "Restart soon", "--yes", env=env)).code == 0
    by_cli = but_via(newest(sync_r), "cli")
    plan = await dashboard.preview_broadcast(BroadcastDraft("global", "", "Restart soon"))
    await dashboard.send_broadcast(plan)
    by_dashboard = but_via(newest(sync_r), "dashboard")
    for record in (by_cli, by_dashboard):
        record["detail"]["msg_id"] = "<msg id>"
    pairs.append((by_cli, by_dashboard))

    for from_cli, from_dashboard in pairs:
        assert from_cli == from_dashboard

    # PostgreSQL holds the same records, each with its face
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, args->>'via' AS via FROM echoes_ops.audit ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["action"], r["via"]) for r in rows] == [
        ("sessions.kick", "cli"),
        ("sessions.kick", "dashboard"),
        ("locks.hold", "cli"),
        ("locks.release", "cli"),
        ("locks.hold", "dashboard"),
        ("locks.release", "dashboard"),
        ("broadcast.global", "cli"),
        ("broadcast.global", "dashboard"),
    ]


async def test_a_write_that_cannot_connect_is_recorded_in_postgresql(database_url: str) -> None:
    from echoes_ops.errors import UnreachableError
    from echoes_ops.operations.audit import AuditLog
    from echoes_ops.operations.migrations import migrate
    from echoes_ops.operations.writes import CLI, kick_audited

    await migrate(database_url)
    log = AuditLog(operator=OPERATOR, database_url=database_url)
    log.connect_error = UnreachableError("cannot connect to Redis at 127.0.0.1:1")
    with pytest.raises(UnreachableError):
        await kick_audited(log, 7, reason="x", via=CLI)
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT action, result, args, detail FROM echoes_ops.audit")
    finally:
        await conn.close()
    assert (row["action"], row["result"]) == ("sessions.kick", "failed")
    assert json.loads(row["args"])["via"] == "cli"
    assert "cannot connect" in json.loads(row["detail"])["error"]
