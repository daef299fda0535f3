"""The reference worker against a real redis-server: routing, registration, the spawn
lock, restarts, killed and stalled connections."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import redis

from echoes_ops.contract import envelopes, keys
from echoes_ops.primitives.lease import Lease
from echoes_ops.runtime.worker import SPAWN_LOCK, Worker
from tests.runtime_helpers import make_worker, session
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)


def texts(worker: Worker, cid: int) -> list[str]:
    return [
        d.envelope.payload.get("data", {}).get("message") for d in worker.connections[cid].inbox
    ]


async def test_registration_meta_client_name_and_join(workers, sync_r):
    events = sync_r.pubsub()
    events.subscribe(keys.WORKERS_CHANNEL)
    assert events.get_message(timeout=5)["type"] == "subscribe"
    w = await workers("w1", meta_ttl=15)
    meta = sync_r.hgetall(keys.worker_meta_key("w1"))
    assert meta["worker_id"] == "w1"
    assert meta["mode"] == "redis"
    assert 0 < sync_r.ttl(keys.worker_meta_key("w1")) <= 15
    names = {c["name"] for c in sync_r.client_list()}
    assert "w1" in names
    joined = events.get_message(timeout=2)
    assert envelopes.decode_message(joined["channel"], joined["data"]).type == "worker_join"
    await w.stop()
    assert sync_r.exists(keys.worker_meta_key("w1")) == 0
    left = events.get_message(timeout=2)
    assert envelopes.decode_message(left["channel"], left["data"]).type == "worker_leave"
    events.close()


async def test_location_broadcast_reaches_exactly_that_location(workers, sync_r):
    a = await workers("wa")
    b = await workers("wb")
    await a.connect_player(session(1, "overpass"))
    await a.connect_player(session(2, "ruins"))
    await b.connect_player(session(3, "overpass"))
    await b.connect_player(session(4, "overpass"))
    await b.connect_player(session(5, "gas_station"))

    await a.tier.publish_location(
        "overpass",
        {"type": "location_update", "data": {"message": "hello overpass"}},
        exclude_player_id=4,
    )
    await eventually(lambda: b.stats.received["location_update"] >= 1)
    await eventually(lambda: a.stats.received["location_update"] >= 1)
    assert texts(a, 1) == ["hello overpass"]
    assert texts(b, 3) == ["hello overpass"]
    assert texts(b, 4) == []  # excluded
    assert texts(a, 2) == [] and texts(b, 5) == []  # noqa: PT018


async def test_presence_follows_moves_and_routing_uses_it(workers, sync_r):
    a = await workers("wa")
    await a.connect_player(session(7, "overpass"))
    assert sync_r.smembers(keys.presence_key("overpass")) == {"7"}
    await a.move_player(7, "ruins", stamina=45)
    assert sync_r.smembers(keys.presence_key("overpass")) == set()
    assert sync_r.smembers(keys.presence_key("ruins")) == {"7"}
    stored = sync_r.hgetall(keys.session_key(7))
    assert stored["location_id"] == "ruins"
    assert stored["stamina"] == "45"
    assert stored["worker_id"] == "wa"
    assert float(stored["last_heartbeat"]) > time.time() - 5  # wall clock, not loop clock
    await a.tier.publish_location("ruins", {"data": {"message": "in ruins"}})
    await eventually(lambda: texts(a, 7) == ["in ruins"])


async def test_personal_message_reaches_one_player(workers):
    a = await workers("wa")
    b = await workers("wb")
    await a.connect_player(session(1, "overpass"))
    await b.connect_player(session(2, "overpass"))
    await b.tier.publish_personal(1, {"type": "combat_update", "data": {"message": "hit"}})
    await eventually(lambda: texts(a, 1) == ["hit"])
    # a marker to b's own player, published after: one server delivers to b's connection in
    # publish order, so once the marker is in, player:1's message would have been too
    await a.tier.publish_personal(2, {"type": "combat_update", "data": {"message": "marker"}})
    await eventually(lambda: texts(b, 2) == ["marker"])
    assert b.stats.received["personal_message"] == 1  # b is not subscribed to player:1


async def test_global_broadcast_reaches_everyone(workers):
    a = await workers("wa")
    b = await workers("wb")
    for cid, w in ((1, a), (2, a), (3, b)):
        await w.connect_player(session(cid, "ruins"))
    await a.tier.publish_global({"type": "server_announcement", "data": {"message": "bye"}})
    await eventually(
        lambda: texts(a, 1) == ["bye"] and texts(a, 2) == ["bye"] and texts(b, 3) == ["bye"]
    )


async def test_disconnect_and_graceful_stop_leave_nothing(workers, sync_r):
    a = await workers("wa")
    await a.connect_player(session(1, "overpass"))
    await a.connect_player(session(2, "ruins"))
    await a.disconnect_player(1)
    assert sync_r.exists(keys.session_key(1)) == 0
    assert sync_r.hkeys(keys.worker_connections_key("wa")) == ["2"]
    await a.stop()
    assert sync_r.exists(keys.session_key(2)) == 0
    assert sync_r.smembers(keys.presence_key("ruins")) == set()
    assert sync_r.exists(keys.worker_connections_key("wa")) == 0


async def test_heartbeat_never_recreates_a_kicked_session(workers, sync_r):
    a = await workers("wa")
    await a.connect_player(session(1, "overpass"))
    assert await a.update_player(1, hp=90) is True
    assert sync_r.hget(keys.session_key(1), "hp") == "90"
    sync_r.delete(keys.session_key(1))  # kicked by an operator
    assert await a.update_player(1, hp=80) is False
    assert sync_r.exists(keys.session_key(1)) == 0


async def test_two_workers_never_run_the_spawn_task_at_once(workers):
    intervals: list[tuple[float, float, str]] = []

    async def task(worker: Worker, lease: Lease) -> None:
        began = time.monotonic()
        await asyncio.sleep(0.05)
        lease.check()
        intervals.append((began, time.monotonic(), worker.worker_id))

    for wid in ("w1", "w2", "w3"):
        w = await workers(wid, run_spawn_task=True, spawn_interval=0.01, spawn_lock_ttl=2)
        w.spawn_task = task
    # ten runs, by at least two workers (the lock moved), however long that takes
    await eventually(
        lambda: len(intervals) >= 10 and len({wid for *_, wid in intervals}) >= 2, timeout=15
    )
    intervals.sort()
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert start >= end, "two spawn tasks overlapped"
    assert len({wid for *_, wid in intervals}) >= 2  # the lock moves between workers


async def test_operator_holding_the_lock_pauses_the_spawn_task(workers, sync_r):
    sync_r.set(keys.lock_key(SPAWN_LOCK), "operator.alice#maintenance", ex=30)
    runs: list[str] = []

    async def task(worker: Worker, lease: Lease) -> None:
        runs.append(worker.worker_id)

    w = await workers("w1", run_spawn_task=True, spawn_interval=0.05)
    w.spawn_task = task
    await eventually(lambda: w.stats.spawn_skipped >= 3)  # three periods skipped
    assert runs == []
    sync_r.delete(keys.lock_key(SPAWN_LOCK))  # maintenance over
    await eventually(lambda: len(runs) >= 1)


async def test_worker_survives_a_redis_restart(private_redis):
    private_redis.start()
    w = make_worker(private_redis.url, "wr", idle_ping=0.3, dead_after=1.0, heartbeat_interval=0.2)
    await w.start()
    try:
        await w.connect_player(session(1, "overpass"))
        private_redis.restart()  # no persistence: every key is gone
        await eventually(lambda: w.stats.reconnects >= 1 and w.subscribed.is_set(), timeout=10)
        check = redis.Redis.from_url(private_redis.url, decode_responses=True)
        # re-registered itself and its player
        await eventually(lambda: check.exists(keys.session_key(1)) == 1, timeout=5)
        assert check.smembers(keys.presence_key("overpass")) == {"1"}
        await eventually(lambda: check.exists(keys.worker_meta_key("wr")) == 1, timeout=5)
        assert w.stats.gap_seconds > 0
        check.publish(
            keys.location_channel("overpass"),
            envelopes.location_update("overpass", {"data": {"message": "after"}}).to_json(),
        )
        await eventually(lambda: len(w.connections[1].inbox) == 1, timeout=5)
        check.close()
    finally:
        await w.stop()
        await w.r.aclose()


async def test_worker_recovers_from_client_kill(workers, sync_r):
    w = await workers("wk", idle_ping=0.3, dead_after=1.0)
    await w.connect_player(session(1, "ruins"))
    ids = [c["id"] for c in sync_r.client_list() if c["name"] == "wk"]
    assert ids
    for client_id in ids:
        sync_r.client_kill_filter(_id=client_id)
    await eventually(lambda: w.stats.reconnects >= 1 and w.subscribed.is_set(), timeout=10)
    sync_r.publish(
        keys.location_channel("ruins"),
        envelopes.location_update("ruins", {"data": {"message": "still here"}}).to_json(),
    )
    await eventually(lambda: len(w.connections[1].inbox) == 1)


async def test_stalled_server_is_detected_by_ping(workers, sync_r):
    w = await workers("ws", idle_ping=0.2, dead_after=0.6)
    sync_r.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    await eventually(lambda: w.stats.reconnects >= 1, timeout=10)
