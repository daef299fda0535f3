"""Writes across slots on Redis Cluster (issue #14 item 3): preload as per-slot steps with
the version record last, a verify pass and the mixed window, a re-run converging; cache
invalidate and sessions kick on both topologies. Against the session's real cluster."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from redis.cluster import RedisCluster as SyncCluster
from redis.crc import key_slot

from benchmarks.worldgen import make_world
from echoes_ops.contract import keys
from echoes_ops.contract.scripts_static import REPLACE_HASHES
from echoes_ops.contract.static import StaticKind
from echoes_ops.errors import DataLostError, Interrupted
from echoes_ops.gamedata import load_gamedata
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.cache import cache_status, invalidate, invalidate_all_static
from echoes_ops.operations.preload import preload
from echoes_ops.operations.sessions import kick
from echoes_ops.operations.stop import StopToken
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.test_preload import generation


@pytest.fixture(scope="module")
def world() -> GameData:
    return load_gamedata(BUNDLED_GAMEDATA)


@pytest.fixture(scope="module")
def big_world() -> GameData:
    return make_world(3000, 300)


@pytest.fixture
def sync_cluster(cluster_url: str) -> Iterator[SyncCluster]:
    client = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    yield client
    client.close()


def primaries(cluster: SyncCluster) -> list[redis.Redis]:
    return [cluster.get_redis_connection(node) for node in cluster.get_primaries()]


async def test_cluster_preload_is_stepped_per_slot_and_verified(cluster_r, sync_cluster, world):
    result = await preload(cluster_r, world, operator="alice")
    assert result.mode == "online"  # one transaction cannot span slots: always stepped
    assert result.online is not None
    assert result.online.per_slot
    assert result.online.mixed_window_s > 0
    assert result.verified == {"verified_keys": result.keys_written, "verify": "content"}
    assert result.keys_written == sum(world.counts().values())
    assert (await cache_status(cluster_r, world)).in_sync
    assert sync_cluster.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") == result.version
    assert sync_cluster.smembers(keys.LOCATION_INDEX_KEY) == set(world.locations)
    # the keys are spread over every primary
    assert all(node.dbsize() > 0 for node in primaries(sync_cluster))
    again = await preload(cluster_r, world, operator="alice")
    assert again.skipped


async def test_every_cluster_step_holds_keys_of_one_slot(cluster_r, sync_cluster, big_world):
    """SLOWLOG at threshold 0 on every primary: each REPLACE_HASHES call names keys of a
    single slot (the server would refuse it otherwise: CROSSSLOT)."""
    nodes = primaries(sync_cluster)
    for node in nodes:
        node.config_set("slowlog-log-slower-than", 0)
        node.config_set("slowlog-max-len", 1_000_000)
        node.slowlog_reset()
    try:
        result = await preload(cluster_r, big_world, operator="alice")
        entries = [e for node in nodes for e in node.slowlog_get(1_000_000)]
    finally:
        for node in nodes:
            node.config_set("slowlog-log-slower-than", 10_000)
            node.config_set("slowlog-max-len", 128)
    sha = hashlib.sha1(REPLACE_HASHES.encode()).hexdigest()
    steps = []
    for entry in entries:
        command = entry["command"]
        parts = (command.decode() if isinstance(command, bytes) else command).split()
        if parts[0].upper() == "EVALSHA" and parts[1] == sha:
            steps.append(parts)
    assert result.online is not None
    assert len(steps) >= result.online.steps - 1  # SLOWLOG truncates very long entries
    for parts in steps:
        n = int(parts[2])
        named = [p for p in parts[3 : 3 + n] if not p.startswith("...")]
        assert len({key_slot(k.encode()) for k in named}) == 1, named
    assert (await cache_status(cluster_r, big_world)).in_sync


async def test_cluster_preload_changes_and_removes(cluster_r, sync_cluster, world):
    await preload(cluster_r, world, operator="alice")
    locations = dict(world.locations)
    gone = sorted(locations)[0]
    del locations[gone]
    changed_world = replace(world, locations=locations)
    result = await preload(cluster_r, changed_world, operator="bob")
    assert result.keys_removed == 1
    assert sync_cluster.exists(keys.location_cache_key(gone)) == 0
    assert sync_cluster.smembers(keys.LOCATION_INDEX_KEY) == set(locations)
    assert (await cache_status(cluster_r, changed_world)).in_sync


async def test_cluster_preload_stopped_midway_converges(cluster_r, sync_cluster, big_world):
    await preload(cluster_r, generation(big_world, "old"), operator="alice")
    previous = sync_cluster.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
    token = StopToken()

    def progress(done: int, total: int) -> None:
        if done >= total // 4:
            token.request("SIGTERM")

    new = generation(big_world, "new")
    with pytest.raises(Interrupted, match="keys done"):
        await preload(cluster_r, new, operator="alice", stop=token, progress=progress)
    assert sync_cluster.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") == previous
    again = await preload(cluster_r, new, operator="alice")
    assert 0 < again.keys_written < len(big_world.items)
    assert (await cache_status(cluster_r, new)).in_sync


def test_cluster_preload_cli_says_per_slot(cluster_url):
    env = {"REDIS_URL": cluster_url, "ECHOES_OPS_GAMEDATA": str(BUNDLED_GAMEDATA)}
    out = cli("preload", "--yes", env=env)
    assert out.code == 0, out.stderr
    assert "per-slot steps, Redis Cluster" in out.stdout
    assert "readers could see a mix" in out.stdout
    payload = json.loads(cli("preload", "--force", "--json", env=env).stdout)
    assert payload["online"]["per_slot"] is True


async def test_invalidate_on_both_topologies(tier_r, world):
    await preload(tier_r, world, operator="alice")
    ids = sorted(world.items)[:5]
    done = await invalidate(tier_r, StaticKind.ITEM, ids)
    assert done.deleted == 5
    assert sum([int(await tier_r.exists(keys.item_def_key(i))) for i in ids]) == 0
    assert await tier_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") is None
    everything = await invalidate_all_static(tier_r)
    assert everything.deleted == sum(world.counts().values()) - 5 + 1  # + the index
    status = await cache_status(tier_r, world)
    assert all(k.loaded == 0 for k in status.kinds.values())
    again = await preload(tier_r, world, operator="alice")
    assert again.keys_written == sum(world.counts().values())


async def test_kick_on_both_topologies(tier_r):
    cid = 42
    places = ["overpass", "ruins", "gas_station"]
    await tier_r.hset(
        keys.session_key(cid),
        mapping={"player_id": str(cid), "worker_id": "w1", "location_id": "overpass"},
    )
    for place in places:
        await tier_r.sadd(keys.presence_key(place), str(cid), "7")
    await tier_r.hset(keys.worker_connections_key("w1"), mapping={str(cid): "1", "7": "1"})
    result = await kick(tier_r, cid, reason="test")
    assert result.removed_session
    assert sorted(result.removed_from) == sorted(places)
    assert await tier_r.exists(keys.session_key(cid)) == 0
    for place in places:
        assert await tier_r.smembers(keys.presence_key(place)) == {"7"}
    assert await tier_r.hgetall(keys.worker_connections_key("w1")) == {"7": "1"}


async def test_doctor_names_the_stepped_preload_on_a_cluster(cluster_r, world):
    from echoes_ops.operations import doctor as ops

    report = await ops.doctor(cluster_r, gamedata=world)
    check = next(c for c in report.checks if c.id == "static_data")
    assert check.verdict == "fail"
    assert "per-slot steps" in check.fix
    assert "--online" not in check.fix


async def test_a_write_lost_before_the_verify_pass(tier_r, tier_url, topology, world):
    """A key gone between the version record and the verify pass (on a cluster: a write the
    promoted replica never received). On a cluster what differs is written once more and
    verified again; on one server --online says it is lost (exit 11)."""
    victim = keys.item_def_key(sorted(world.items)[0])
    url = tier_url.replace("?cluster=true", "")
    sync = SyncCluster.from_url(url) if topology == "cluster" else redis.Redis.from_url(url)

    def progress(done: int, total: int) -> None:
        if done == total:  # after the version record's step, before the verify pass
            sync.delete(victim)

    if topology == "cluster":
        result = await preload(tier_r, world, operator="alice", online=True, progress=progress)
        sync.close()
        assert result.verified["rewritten_after_verify"] == 1
        assert (await cache_status(tier_r, world)).in_sync
    else:
        with pytest.raises(DataLostError, match="item 1"):
            await preload(tier_r, world, operator="alice", online=True, progress=progress)
        sync.close()


async def test_a_failed_slot_transaction_stops_before_the_last_group(cluster_r, sync_cluster):
    """An error inside one slot's EXEC is raised before the group of ``last_key`` runs, so a
    kick never removes the session while presence entries it failed to remove stay behind."""
    from redis.exceptions import ResponseError

    from echoes_ops.client.slotwrites import transactions_per_slot

    presence, session = "presence:x", "session:1"
    assert key_slot(presence.encode()) != key_slot(session.encode())
    sync_cluster.set(presence, "not a set")  # SREM on it answers WRONGTYPE inside EXEC
    sync_cluster.hset(session, "username", "p1")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await transactions_per_slot(
            cluster_r, [("SREM", presence, "1"), ("DEL", session)], last_key=session
        )
    assert sync_cluster.hget(session, "username") == "p1"  # the last group never ran


async def test_a_cluster_cleanup_rechecks_each_session_in_the_call_that_deletes_it(
    tier_r, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the plan (players whose session names the worker) and the removal, a player
    reconnects elsewhere: the session, its presence and the new worker's entry stay, on both
    topologies (on a cluster the re-check is in the one-key call that deletes the session)."""
    from echoes_ops.operations import workers

    await tier_r.hset(keys.session_key(1), mapping={"worker_id": "w-gone", "location_id": "a"})
    await tier_r.hset(keys.session_key(2), mapping={"worker_id": "w-gone", "location_id": "b"})
    await tier_r.sadd(keys.presence_key("a"), "1")
    await tier_r.sadd(keys.presence_key("b"), "2")
    await tier_r.hset(keys.worker_connections_key("w-gone"), mapping={"1": "c", "2": "c"})
    await tier_r.hset(keys.worker_meta_key("w-gone"), "heartbeat", "1")
    planned = workers._players_naming

    async def plan_then_reconnect(r, wid):
        found = await planned(r, wid)
        await tier_r.hset(keys.session_key(2), "worker_id", "w-new")  # player 2 is back
        return found

    monkeypatch.setattr(workers, "_players_naming", plan_then_reconnect)
    done = await workers.cleanup_worker(tier_r, "w-gone")
    assert done.players == [1, 2]
    assert (done.sessions_removed, done.presence_removed) == (1, 1)
    assert await tier_r.exists(keys.session_key(1)) == 0
    assert await tier_r.smembers(keys.presence_key("a")) == set()
    assert await tier_r.hget(keys.session_key(2), "worker_id") == "w-new"
    assert await tier_r.smembers(keys.presence_key("b")) == {"2"}
    assert await tier_r.exists(keys.worker_connections_key("w-gone")) == 0
    assert await tier_r.exists(keys.worker_meta_key("w-gone")) == 0


async def test_a_cluster_cleanup_of_many_players_takes_a_few_pipelined_rounds(
    cluster_r, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 players over many slots and locations: every session, connection entry and
    presence entry goes, in a handful of pipelined rounds (it was three round trips per
    player), the sessions' re-checking calls all in the first."""
    from echoes_ops.client import bulk as bulk_module
    from echoes_ops.operations import workers

    players = list(range(1, 301))
    for cid in players:
        loc = f"loc{cid % 7}"
        await cluster_r.hset(
            keys.session_key(cid), mapping={"worker_id": "w-gone", "location_id": loc}
        )
        await cluster_r.sadd(keys.presence_key(loc), str(cid))
    await cluster_r.hset(
        keys.worker_connections_key("w-gone"), mapping={str(c): "c" for c in players}
    )
    await cluster_r.hset(keys.worker_meta_key("w-gone"), "heartbeat", "1")
    rounds: list[list[str]] = []  # the command names of each bulk round
    real_bulk = bulk_module.bulk

    async def counting_bulk(client, commands, **kwargs):
        rounds.append([str(command[0]) for command in commands])
        return await real_bulk(client, commands, **kwargs)

    monkeypatch.setattr(bulk_module, "bulk", counting_bulk)
    monkeypatch.setattr(workers, "bulk", counting_bulk)
    done = await workers.cleanup_worker(cluster_r, "w-gone")
    assert (done.sessions_removed, done.presence_removed) == (300, 300)
    assert [c for c in players if await cluster_r.exists(keys.session_key(c))] == []
    for n in range(7):
        assert await cluster_r.scard(keys.presence_key(f"loc{n}")) == 0
    assert await cluster_r.exists(keys.worker_connections_key("w-gone")) == 0
    evalsha_rounds = [r for r in rounds if "EVALSHA" in r]
    assert len(evalsha_rounds) == 1
    assert len(evalsha_rounds[0]) == 300
    assert len(rounds) <= 6  # with the plan's HGETs and the HDEL and SREM rounds
