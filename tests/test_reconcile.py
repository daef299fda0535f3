"""Drift made the ways production makes it, found and repaired by reconcile (real Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.operations.reconcile import KINDS, find_drift, reconcile, repair
from tests.cli_helpers import cli
from tests.runtime_helpers import make_worker, session
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(90)

DOOMED_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.runtime_helpers import make_worker, session

    async def main(url):
        worker = make_worker(url, "doomed")
        await worker.start()
        for cid in range(100, 110):
            await worker.connect_player(session(cid, "overpass" if cid % 2 else "ruins"))
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1]))
    """
)


def found(report) -> dict[str, int]:
    return {name: kind.found for name, kind in report.kinds.items() if kind.found}


async def test_clean_tier_has_no_drift(r, redis_url):
    w = make_worker(redis_url, "healthy")
    await w.start()
    try:
        await w.connect_player(session(1, "overpass"))
        report = await reconcile(r, grace=0)
        assert report.clean, found(report)
        assert report.scanned["sessions"] == 1
    finally:
        await w.stop()
        await w.r.aclose()


async def test_sigkilled_worker_drift_is_repaired_and_healthy_players_kept(r, sync_r, redis_url):
    healthy = make_worker(redis_url, "healthy")
    await healthy.start()
    proc = subprocess.Popen(
        [sys.executable, "-c", DOOMED_WORKER, redis_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        for cid in (1, 2, 3):
            await healthy.connect_player(session(cid, "overpass"))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        await eventually(lambda: "doomed" not in {c["name"] for c in sync_r.client_list()})
        await asyncio.sleep(0.05)  # heartbeats now older than the (zero) grace period

        dry = await reconcile(r, grace=0)
        assert found(dry) == {"dead_worker": 10}
        assert sync_r.scard(keys.presence_key("overpass")) == 3 + 5

        fixed = await reconcile(r, fix=True, grace=0)
        assert fixed.kinds["dead_worker"].fixed == 10
        for cid in range(100, 110):
            assert sync_r.exists(keys.session_key(cid)) == 0
        assert sync_r.exists(keys.worker_connections_key("doomed")) == 0
        assert sync_r.smembers(keys.presence_key("overpass")) == {"1", "2", "3"}
        for cid in (1, 2, 3):  # no healthy player removed
            assert sync_r.hget(keys.session_key(cid), "worker_id") == "healthy"

        again = await reconcile(r, fix=True, grace=0)
        assert again.clean, found(again)
    finally:
        if proc.poll() is None:
            proc.kill()
        await healthy.stop()
        await healthy.r.aclose()


async def test_grace_period_protects_recent_players(r, sync_r):
    sync_r.hset(
        keys.session_key(7),
        mapping={
            "worker_id": "gone",
            "location_id": "ruins",
            "last_heartbeat": str(time.time() - 5),
        },
    )
    sync_r.expire(keys.session_key(7), 600)
    sync_r.sadd(keys.presence_key("ruins"), 7)
    sync_r.hset(keys.worker_connections_key("gone"), "7", "connected")
    assert (await reconcile(r, grace=60)).clean
    report = await reconcile(r, grace=1)
    assert found(report) == {"dead_worker": 1}


async def test_unknown_heartbeat_is_reported_not_repaired(r, sync_r):
    # the plan's loop-clock heartbeat: seconds since boot, not epoch seconds
    sync_r.hset(
        keys.session_key(8),
        mapping={
            "worker_id": "gone",
            "location_id": "ruins",
            "last_heartbeat": "5234.12",
        },
    )
    sync_r.expire(keys.session_key(8), 600)
    sync_r.sadd(keys.presence_key("ruins"), 8)
    report = await reconcile(r, fix=True, grace=0)
    kind = report.kinds["dead_worker"]
    assert (kind.found, kind.fixed, kind.not_repairable) == (1, 0, 1)
    assert sync_r.exists(keys.session_key(8)) == 1


async def test_plans_non_atomic_move_crash(r, sync_r, redis_url):
    """The plan moves with SREM then SADD, then updates the session: crashes in between."""
    # crash after SREM(old), before SADD(new): in no set, session still names the old place
    sync_r.hset(keys.session_key(11), mapping={"worker_id": "w", "location_id": "overpass"})
    sync_r.expire(keys.session_key(11), 600)
    # crash after SADD(new), before the session update: in the new set, session says old
    sync_r.hset(keys.session_key(12), mapping={"worker_id": "w", "location_id": "overpass"})
    sync_r.expire(keys.session_key(12), 600)
    sync_r.sadd(keys.presence_key("ruins"), 12)
    worker_w = redis.Redis.from_url(redis_url, client_name="w")  # worker "w" is connected
    worker_w.ping()
    report = await reconcile(r, fix=True, grace=3600)
    assert found(report) == {"missing_member": 2, "location_mismatch": 1}
    assert sync_r.smembers(keys.presence_key("overpass")) == {"11", "12"}
    assert sync_r.smembers(keys.presence_key("ruins")) == set()
    assert (await reconcile(r, grace=3600)).clean
    worker_w.close()


async def test_orphans_multi_location_and_missing_ttls(r, sync_r):
    sync_r.sadd(keys.presence_key("ruins"), 21)  # no session at all
    sync_r.hset(keys.session_key(22), mapping={"location_id": "ruins"})  # no TTL
    sync_r.sadd(keys.presence_key("ruins"), 22)
    sync_r.sadd(keys.presence_key("overpass"), 22)  # in two sets
    sync_r.rpush(keys.inventory_key(22), json.dumps({"item_id": "knife"}))  # no TTL
    sync_r.set(keys.lock_key("spawn_manager"), "worker-3")  # the plan's value, no TTL
    report = await reconcile(r, fix=True, grace=0)
    assert found(report) == {
        "orphan_member": 1,
        "location_mismatch": 1,
        "multi_location": 1,
        "no_ttl_session": 1,
        "no_ttl_inventory": 1,
        "no_ttl_lock": 1,
    }
    assert sync_r.smembers(keys.presence_key("ruins")) == {"22"}
    assert sync_r.exists(keys.presence_key("overpass")) == 0
    assert 0 < sync_r.ttl(keys.session_key(22)) <= keys.SESSION_TTL
    assert 0 < sync_r.ttl(keys.inventory_key(22)) <= keys.INVENTORY_TTL
    assert sync_r.ttl(keys.lock_key("spawn_manager")) > 0
    assert sync_r.get(keys.lock_key("spawn_manager")) == "worker-3"
    assert (await reconcile(r, fix=True, grace=0)).clean


async def test_unknown_location_sets_are_reported(r, sync_r):
    sync_r.hset(keys.location_cache_key("ruins"), mapping={"id": "ruins", "name": "Ruins"})
    sync_r.hset(keys.session_key(31), mapping={"location_id": "atlantis"})
    sync_r.expire(keys.session_key(31), 600)
    sync_r.sadd(keys.presence_key("atlantis"), 31)
    report = await reconcile(r, fix=True, grace=0)
    assert found(report) == {"unknown_location": 1}
    assert report.kinds["unknown_location"].examples == [{"location": "atlantis", "members": 1}]
    assert sync_r.sismember(keys.presence_key("atlantis"), 31)  # reported, not touched


async def test_player_reconnecting_elsewhere_during_reconcile_is_left_alone(r, sync_r, redis_url):
    old = time.time() - 600
    for cid in (41, 42):
        sync_r.hset(
            keys.session_key(cid),
            mapping={
                "worker_id": "crashed",
                "location_id": "ruins",
                "last_heartbeat": str(old),
            },
        )
        sync_r.expire(keys.session_key(cid), 600)
        sync_r.sadd(keys.presence_key("ruins"), cid)
        sync_r.hset(keys.worker_connections_key("crashed"), str(cid), "connected")
    plan = await find_drift(r, grace=60)
    assert plan.report.kinds["dead_worker"].found == 2

    live = make_worker(redis_url, "rescuer")
    await live.start()
    try:
        await live.connect_player(session(41, "overpass"))  # reconnects before the repair
        report = await repair(r, plan)
        assert report.kinds["dead_worker"].fixed == 1
        assert sync_r.hget(keys.session_key(41), "worker_id") == "rescuer"
        assert sync_r.smembers(keys.presence_key("overpass")) == {"41"}
        assert sync_r.exists(keys.session_key(42)) == 0
        leftover = await reconcile(r, fix=True, grace=60)
        # 41 is still in the ruins set it left: now an ordinary mismatch, repaired
        assert found(leftover) == {"location_mismatch": 1, "multi_location": 1}
        assert (await reconcile(r, grace=60)).clean
    finally:
        await live.stop()
        await live.r.aclose()


def test_cli_json_is_stable_and_exit_codes(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    clean = cli("reconcile", "--json", env=env)
    assert clean.code == 0
    report = json.loads(clean.stdout)
    assert set(report) == {
        "dry_run",
        "clean",
        "drift",
        "pending",
        "fixed",
        "selected",
        "grace_seconds",
        "scanned",
        "kinds",
        "elapsed_s",
        "note",  # how repairs are guarded on this topology (null on one server)
        "unconfirmed",  # cross-slot findings a second pass did not confirm (cluster)
    }
    assert report["note"] is None
    assert list(report["kinds"]) == list(KINDS)
    assert set(report["kinds"]["orphan_member"]) == {
        "found",
        "fixed",
        "not_repairable",
        "pending",
        "pending_ready_in_s",
        "examples",
    }

    sync_r.sadd(keys.presence_key("ruins"), 99)
    drift = cli("reconcile", env=env)
    assert drift.code == 1
    assert "orphan_member" in drift.stdout
    fixed = cli("reconcile", "--fix", "--yes", "--json", env=env)
    assert fixed.code == 0
    assert json.loads(fixed.stdout)["kinds"]["orphan_member"]["fixed"] == 1
    (record,) = sync_r.xrevrange("echoes:audit", count=1)
    assert record[1]["action"] == "reconcile.fix"
    assert cli("reconcile", env=env).code == 0


async def test_cache_only_sessions_are_not_presences(r, sync_r):
    """Warmup writes sessions of offline players (no worker_id): not missing from a set."""
    sync_r.hset(keys.session_key(51), mapping={"location_id": "ruins", "username": "offline"})
    sync_r.expire(keys.session_key(51), 600)
    report = await reconcile(r, fix=True, grace=0)
    assert report.clean, found(report)
    assert sync_r.exists(keys.presence_key("ruins")) == 0


async def test_players_moving_during_the_walk_are_not_drift(r, sync_r, redis_url, monkeypatch):
    """The walk reads sessions first and location sets later: players who move in between
    look misplaced until the confirmation re-reads them at one instant. Real drift stays."""
    from echoes_ops.operations import reconcile as module

    w = make_worker(redis_url, "mover")
    await w.start()
    try:
        for cid in range(1, 7):
            await w.connect_player(session(cid, "ruins"))
        sync_r.sadd(keys.presence_key("overpass"), 5)  # real drift: 5 is in two sets
        original = module.members_of_sets
        moved = False
        route = ("ruins", "overpass")

        async def move_then_read(conn, set_keys, sizes=None):  # type: ignore[no-untyped-def]
            nonlocal moved
            if not moved:  # after the census read the sessions, before the sets are read
                moved = True
                for cid in (1, 2, 3):
                    await w.tier.move(cid, *route)
            return await original(conn, set_keys, sizes)

        monkeypatch.setattr(module, "members_of_sets", move_then_read)
        plan = await find_drift(r, grace=0)
        assert moved
        assert found(plan.report) == {"multi_location": 1, "location_mismatch": 1}
        assert plan.report.kinds["location_mismatch"].examples == [
            {"id": 5, "location": "overpass", "session_location": "ruins"}
        ]
        assert plan.report.scanned["rechecked_players"] == 4

        monkeypatch.setattr(module, "_recheck_presence", _no_recheck)
        moved, route = False, ("overpass", "ruins")
        unconfirmed = await find_drift(r, grace=0)  # what the walk alone would report
        assert moved
        assert unconfirmed.report.kinds["location_mismatch"].found > 1
    finally:
        await w.stop()
        await w.r.aclose()


async def _no_recheck(*_args: object) -> None:
    return None
