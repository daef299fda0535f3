"""Warmup's compare-and-write (`operations/warmup/writer.py` and its script): a second run
writes nothing, fresher live sessions survive, and the edge cases of the Lua compare-and-write;
against a real PostgreSQL (reference schema) and a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.contract.session import Session
from echoes_ops.local.demo import seed_demo
from echoes_ops.runtime.tier import Tier
from tests.warmup_helpers import CHARACTERS, DATA, env_for, seed, sql, warm


def test_second_run_changes_nothing(database_url, redis_url, sync_r):
    seed(database_url)
    env = env_for(database_url, redis_url)
    assert warm(env)[0] == 0
    sync_r.config_resetstat()
    code, report, _ = warm(env)
    assert code == 0
    assert report["sessions"]["written"] == 0
    assert report["sessions"]["unchanged"] == CHARACTERS
    assert report["inventories"]["written"] == report["inventories"]["removed"] == 0
    assert report["inventories"]["unchanged"] == CHARACTERS
    # nothing was written: no write command ran at all (commands run by Lua are counted)
    stats = sync_r.info("commandstats")
    writes = {"hset", "hdel", "rpush", "expire", "lpush", "lset", "hsetnx"}
    assert not [name for name in stats if name.removeprefix("cmdstat_") in writes]
    assert stats["cmdstat_del"]["calls"] == 1  # releasing the run's lock

    # a change in the database is picked up by the next run, and only that change
    sql(database_url, "UPDATE characters SET hp = 1, last_movement_time = NULL WHERE id = 7")
    sql(database_url, "DELETE FROM inventory WHERE character_id = 8")
    code, report, _ = warm(env)
    assert report["sessions"]["written"] == 1
    assert report["inventories"]["removed"] == 1
    assert report["sessions"]["unchanged"] == CHARACTERS - 1
    assert sync_r.hget(keys.session_key(7), "hp") == "1"
    assert not sync_r.hexists(keys.session_key(7), "last_movement_time")
    assert not sync_r.exists(keys.inventory_key(8))


def test_fresher_live_sessions_survive(database_url, redis_url, sync_r):
    now = datetime.now(UTC)
    seed(database_url, 50, now=now - timedelta(minutes=1))
    rows = {r["id"]: r for r in sql(database_url, "SELECT * FROM characters")}

    async def reference_worker() -> None:
        async with open_redis(Settings.from_dsn(redis_url).redis_target()) as r:
            tier = Tier(r, "worker-1")  # stamps last_heartbeat with the wall clock: now
            for cid in (1, 2):
                await tier.connect_player(
                    Session(character_id=cid, location_id="overpass", username="live", hp=3)
                )
                await tier.replace_inventory(cid, [{"item_id": "live-item"}])

    asyncio.run(reference_worker())
    live_before = {cid: sync_r.hgetall(keys.session_key(cid)) for cid in (1, 2)}
    # by hand: a heartbeat from an event-loop clock (the plan's), and a key of another type
    sync_r.hset(keys.session_key(3), mapping={"hp": "9", "last_heartbeat": "183422.511"})
    sync_r.set(keys.session_key(4), "not a hash")
    # an older session of a worker: the row is newer, its fields are merged in
    older = rows[5]["last_active_at"].timestamp() - 60
    sync_r.hset(
        keys.session_key(5),
        mapping={"worker_id": "worker-2", "websocket_connected": "true", "hp": "1",
                 "last_heartbeat": repr(older)},
    )  # fmt: skip
    sync_r.rpush(keys.inventory_key(5), "stale")

    code, report, _ = warm(env_for(database_url, redis_url))
    assert code == 0
    assert report["sessions"] == {
        "written": 46,
        "unchanged": 0,
        "skipped_fresher": 2,
        "skipped_unknown": 2,
    }
    assert report["inventories"]["skipped_fresher"] == 2
    assert report["inventories"]["skipped_unknown"] == 2
    assert {e["id"] for e in report["examples"]["skipped_unknown"]} == {3, 4}
    for cid in (1, 2):
        assert sync_r.hgetall(keys.session_key(cid)) == live_before[cid]
        assert sync_r.lrange(keys.inventory_key(cid), 0, -1) == ['{"item_id":"live-item"}']
    assert sync_r.hgetall(keys.session_key(3)) == {"hp": "9", "last_heartbeat": "183422.511"}
    assert sync_r.get(keys.session_key(4)) == "not a hash"
    merged = sync_r.hgetall(keys.session_key(5))
    assert merged["worker_id"] == "worker-2"
    assert merged["websocket_connected"] == "true"
    assert merged["hp"] == str(rows[5]["hp"])
    assert merged["last_heartbeat"] == repr(rows[5]["last_active_at"].timestamp())
    assert "stale" not in sync_r.lrange(keys.inventory_key(5), 0, -1)


# -- the operation directly (edge cases of the Lua compare-and-write) ----------------------


async def test_edge_cases_of_the_compare_and_write(database_url, r, monkeypatch):
    from echoes_ops.operations.warmup import run as warmup_run

    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=6,
    )

    async def run(**kw: Any) -> Any:
        return await warmup_run.warmup(
            r, database_url, operator="test", what=["sessions", "inventories"],
            active_within=420, **kw,
        )  # fmt: skip

    first = await run()
    assert first.sessions.written == 6
    # a warmed session that lost its TTL is rewritten (and gets one); a list of the wrong
    # type is left alone
    await r.persist(keys.session_key(1))
    await r.delete(keys.inventory_key(2))
    await r.set(keys.inventory_key(2), "someone else's")
    dry = await run(dry_run=True)
    assert (dry.sessions.written, dry.sessions.unchanged) == (1, 5)
    assert dry.inventories.skipped_unknown == 1
    assert await r.ttl(keys.session_key(1)) == -1  # the dry run wrote nothing

    # the server lost its scripts (restart, SCRIPT FLUSH) between loading and running
    calls = 0

    class FlushingLine(warmup_run.StepConnection):
        async def packed(self, commands: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                await r.script_flush()
            return await super().packed(commands)

    monkeypatch.setattr(warmup_run, "StepConnection", FlushingLine)
    again = await run()
    assert calls == 2  # NOSCRIPT, reloaded, sent again (6 players fit one call)
    assert (again.sessions.written, again.sessions.unchanged) == (1, 5)
    assert again.inventories.skipped_unknown == 1
    assert 0 < await r.ttl(keys.session_key(1)) <= keys.SESSION_TTL
    assert await r.get(keys.inventory_key(2)) == "someone else's"
