"""reconcile on Redis Cluster (issue #14 item 3): the census on every primary, merged; the
same findings as on one server; repairs across slots only on findings a second pass
``--grace`` later sees again, each change re-checking the key it changes; the output says so.
Against the session's real cluster (and one server, where the tests hold on both)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.cluster import RedisCluster as SyncCluster
from redis.crc import key_slot

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import primary_clients
from echoes_ops.contract import keys
from echoes_ops.operations.reconcile import find_drift, reconcile, repair
from echoes_ops.operations.reconcile_cluster import census_all
from tests import test_cluster_walks as walks
from tests.cli_helpers import cli

DEAD = "w-gone"


@pytest.fixture
def sync_tier(topology: str, tier_url: str) -> Iterator[redis.Redis | SyncCluster]:
    if topology == "cluster":
        client: redis.Redis | SyncCluster = SyncCluster.from_url(
            tier_url.replace("?cluster=true", ""), decode_responses=True
        )
    else:
        client = redis.Redis.from_url(tier_url, decode_responses=True)
    yield client
    client.close()


def drift(r: redis.Redis | SyncCluster, *, dead: range = range(1, 6)) -> None:
    """Dead-worker sessions, an orphan member, a misplaced member and a session without TTL,
    spread over many slots."""
    old = f"{time.time() - 600:.3f}"
    for cid in dead:
        r.hset(
            keys.session_key(cid),
            mapping={"worker_id": DEAD, "location_id": "ruins", "last_heartbeat": old},
        )
        r.expire(keys.session_key(cid), 600)
        r.sadd(keys.presence_key("ruins"), cid)
        r.hset(keys.worker_connections_key(DEAD), str(cid), "connected")
    r.sadd(keys.presence_key("overpass"), 77)  # no session: orphan
    r.hset(keys.session_key(8), mapping={"location_id": "ruins", "last_heartbeat": old})
    r.expire(keys.session_key(8), 600)
    r.sadd(keys.presence_key("overpass"), 8)  # its session says ruins: misplaced
    r.hset(keys.session_key(9), mapping={"location_id": "ruins"})  # no TTL


def found(report) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {name: k.found for name, k in report.kinds.items() if k.found}


def test_the_drift_spans_slots() -> None:
    names = [keys.session_key(c) for c in (1, 2, 3, 8, 9)] + [
        keys.presence_key("ruins"),
        keys.presence_key("overpass"),
        keys.worker_connections_key(DEAD),
    ]
    assert len({key_slot(n.encode()) for n in names}) == len(names)


async def test_reconcile_finds_and_repairs_the_same_on_both(
    tier_r: AnyRedis, sync_tier: redis.Redis | SyncCluster, topology: str
) -> None:
    drift(sync_tier)
    plan = await find_drift(tier_r, grace=0.5)
    assert found(plan.report) == {
        "dead_worker": 5,
        "orphan_member": 1,
        "location_mismatch": 1,
        "no_ttl_session": 1,
    }
    report = await repair(tier_r, plan)
    if topology == "cluster":
        assert report.note is not None
        assert "two passes" in report.note
        # the confirming pass came --grace after the first: counted from the plan's own
        # detection time (a loaded machine may spend part of the grace before repair starts)
        assert time.monotonic() - plan.detected_at >= 0.5
    else:
        assert report.note is None
    assert report.unconfirmed == 0
    fixed = {name: k.fixed for name, k in report.kinds.items() if k.fixed}
    assert fixed == {
        "dead_worker": 5,
        "orphan_member": 1,
        "location_mismatch": 1,
        "no_ttl_session": 1,
    }
    for cid in range(1, 6):
        assert sync_tier.exists(keys.session_key(cid)) == 0
    assert sync_tier.smembers(keys.presence_key("ruins")) == set()
    assert sync_tier.exists(keys.presence_key("overpass")) == 0
    assert sync_tier.hlen(keys.worker_connections_key(DEAD)) == 0
    assert sync_tier.exists(keys.session_key(8)) == 1  # a cache-only session stays
    assert sync_tier.ttl(keys.session_key(9)) > 0
    assert (await reconcile(tier_r, grace=0.5)).clean


async def test_census_reads_every_primary(cluster_r: AnyRedis, cluster_url: str) -> None:
    sync = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    try:
        drift(sync, dead=range(10, 70))
    finally:
        sync.close()
    nodes = await primary_clients(cluster_r)
    holding = [await node.dbsize() for node in nodes]
    assert len(nodes) == 3
    assert all(holding)  # the tier is spread over the three
    plan = await find_drift(cluster_r, grace=0.5)
    assert plan.report.scanned["sessions"] == 62
    assert plan.report.scanned["keys"] == sum(holding)


async def test_a_worker_back_before_the_second_pass_keeps_its_players(
    cluster_r: AnyRedis, cluster_url: str
) -> None:
    """On a cluster the session delete cannot check the worker's liveness in the same call:
    the second sighting does. A worker that reconnects between the passes (a restart) is
    alive again: its players are left alone and the output says how many were not confirmed."""
    sync = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    try:
        drift(sync)
        plan = await find_drift(cluster_r, grace=0.5)
        assert plan.report.kinds["dead_worker"].found == 5
        node = (await primary_clients(cluster_r))[0]
        kwargs = node.connection_pool.connection_kwargs
        back = Redis(host=kwargs["host"], port=kwargs["port"], client_name=DEAD)
        try:
            await back.ping()  # the worker is connected again
            report = await repair(cluster_r, plan, kinds=["dead_worker"])
        finally:
            await back.aclose()
        assert report.kinds["dead_worker"].fixed == 0
        assert report.unconfirmed == 5
        assert all(sync.exists(keys.session_key(c)) for c in range(1, 6))
        assert sync.scard(keys.presence_key("ruins")) == 5
    finally:
        sync.close()


def test_cli_says_how_repairs_are_guarded_on_a_cluster(cluster_url: str) -> None:
    sync = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    try:
        drift(sync)
    finally:
        sync.close()
    env = {"REDIS_URL": cluster_url}
    dry = cli("reconcile", "--grace", "0.5", env=env)
    assert dry.code == 1, dry.stderr  # drift found
    assert "two passes 0.5 s apart" in dry.stdout
    fixed = cli("reconcile", "--fix", "--yes", "--grace", "0.5", env=env)
    assert fixed.code == 0, fixed.stderr
    assert "two passes 0.5 s apart" in fixed.stdout
    assert "re-checks the key it changes" in fixed.stdout
    assert cli("reconcile", env=env).code == 0


def test_json_says_how_many_players_were_rechecked_on_both(
    sync_tier: redis.Redis | SyncCluster, tier_url: str, topology: str
) -> None:
    """``scanned.rechecked_players`` is always a count, with one meaning (docs/inspect.md):
    the players re-read at one instant before the presence kinds were reported. One server
    re-reads every suspect (the orphan member and the misplaced one); a cluster cannot (a
    session and its sets lie in different slots) and says 0, its note saying what --fix
    does instead. It was missing from the cluster's JSON (null to a reader)."""
    drift(sync_tier)
    out = cli("reconcile", "--json", "--grace", "0.5", env={"REDIS_URL": tier_url})
    assert out.code == 1, out.stderr  # drift found
    report = json.loads(out.stdout)
    rechecked = report["scanned"]["rechecked_players"]
    assert type(rechecked) is int
    assert rechecked == (0 if topology == "cluster" else 2)
    assert (report["note"] is not None) == (topology == "cluster")


# the migrating cluster of the walks' tests (module-scoped there, here too)
moving_cluster = walks.moving_cluster
moving = walks.moving


@pytest.mark.parametrize("finished", [True, False], ids=["moved", "still-moving"])
async def test_the_census_is_exact_while_a_slot_migrates(
    moving: AnyRedis, moving_cluster: Any, monkeypatch: pytest.MonkeyPatch, finished: bool
) -> None:
    """CLUSTER SETSLOT/MIGRATE between the nodes' walks (target walked first, source last):
    every session counted once, none lost, the moved ones read again."""
    slot = key_slot(keys.session_key(1).encode()) if finished else 777
    in_slot = walks._keys_in_slot(slot, walks.SLOT_KEYS)
    ids = sorted([*in_slot, *range(100_000, 100_300)])
    await bulk(moving, [("HSET", keys.session_key(c), "location_id", "ruins") for c in ids])
    source = walks._owner(moving_cluster, slot)
    target = next(p for p in walks._primaries(moving_cluster) if p != source)
    move = walks.SlotMove(moving_cluster, slot, source, target)

    try:
        walks._walk_target_first(monkeypatch, move, lambda: move.migrate(finished))
        tier = await census_all(moving, count=50)
        assert sorted(tier.sessions) == ids
        assert all(s.location == "ruins" for s in tier.sessions.values())
    finally:
        monkeypatch.undo()
        if not finished:
            move.move()
            move.finish()
        move.close()
