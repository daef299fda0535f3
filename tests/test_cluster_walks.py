"""Keyspace walks on a cluster: every primary, merged, each key once, and exact while a slot
migrates (CLUSTER SETSLOT ... MIGRATING/IMPORTING and MIGRATE during the walk)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.crc import key_slot

from echoes_ops.client import walk as walk_module
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import open_redis
from echoes_ops.client.scan import collect_keys
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.operations.sessions import list_sessions
from echoes_ops.operations.tiercount import count_tier


def _seed_commands(players: int) -> list[tuple[Any, ...]]:
    # heartbeats relative to when the tier is written, not to when this module was imported
    # (the suite can take longer than the staleness threshold to reach these tests)
    now = time.time()
    commands: list[tuple[Any, ...]] = []
    for cid in range(1, players + 1):
        beat = now - 900 if cid % 4 == 0 else now - 5  # every fourth one stale
        commands.append(
            (
                "HSET",
                keys.session_key(cid),
                "worker_id",
                "w1",
                "location_id",
                "town" if cid % 2 else "ruins",
                "username",
                f"p{cid}",
                "last_heartbeat",
                repr(beat),
            )
        )
        commands.append(("SADD", keys.presence_key("town" if cid % 2 else "ruins"), cid))
    commands += [("SET", keys.lock_key(f"l{i}"), "w1#x") for i in range(20)]
    commands.append(("HSET", keys.worker_meta_key("w1"), "heartbeat", repr(now)))
    return commands


async def test_tier_count_and_sessions_are_the_same_on_both_topologies(tier_r) -> None:
    await bulk(tier_r, _seed_commands(600))
    tier = await count_tier(tier_r, stale_after=300)
    assert len(tier.sessions) == 600
    assert len(tier.stale) == 150
    assert tier.presence == {"town": 300, "ruins": 300}
    assert len(tier.lock_keys) == 20
    assert tier.worker_metas == {"w1"}
    listing = await list_sessions(tier_r)
    assert [row.character_id for row in listing.rows] == list(range(1, 601))
    stale = await list_sessions(tier_r, stale_after=300)
    assert [row.character_id for row in stale.rows] == list(range(4, 601, 4))


# -- during a slot migration -------------------------------------------------------------


@pytest.fixture(scope="module")
def moving_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A cluster of this module's own: its slots are moved around."""
    cluster = RedisCluster(tmp_path_factory.mktemp("moving-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


def _sync(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True)


def _owner(cluster: RedisCluster, slot: int) -> int:
    for node in cluster.nodes:
        client = _sync(node.port)
        try:
            if client.execute_command("ROLE")[0] != "master":
                continue
            for line in client.execute_command("CLUSTER", "NODES").splitlines():
                if "myself" not in line:
                    continue
                for item in line.split()[8:]:
                    if item.startswith("["):
                        continue
                    start, _, end = item.partition("-")
                    if int(start) <= slot <= int(end or start):
                        return node.port
        finally:
            client.close()
    raise AssertionError(f"no owner for slot {slot}")


def _primaries(cluster: RedisCluster) -> list[int]:
    ports = []
    for node in cluster.nodes:
        client = _sync(node.port)
        try:
            if client.execute_command("ROLE")[0] == "master":
                ports.append(node.port)
        finally:
            client.close()
    return ports


class SlotMove:
    """CLUSTER SETSLOT/MIGRATE of one slot from ``source`` to ``target``, in steps."""

    def __init__(self, cluster: RedisCluster, slot: int, source: int, target: int) -> None:
        self.cluster, self.slot, self.source, self.target = cluster, slot, source, target
        self.src, self.dst = _sync(source), _sync(target)
        self.src_id = self.src.execute_command("CLUSTER", "MYID")
        self.dst_id = self.dst.execute_command("CLUSTER", "MYID")

    def begin(self) -> None:
        self.dst.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.src_id)
        self.src.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.dst_id)

    def move(self, count: int | None = None) -> int:
        moved = 0
        while count is None or moved < count:
            step = 10 if count is None else min(10, count - moved)
            batch = self.src.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, step)
            if not batch:
                break
            self.src.execute_command(
                "MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *batch
            )
            moved += len(batch)
        return moved

    def finish(self) -> None:
        for port in _primaries(self.cluster):
            client = _sync(port)
            try:
                client.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", self.dst_id)
            finally:
                client.close()

    def migrate(self, finished: bool) -> None:
        """Start the migration and move the slot's keys: all of them and hand the slot over
        (``finished``), or half of them, leaving the slot migrating."""
        self.begin()
        if finished:
            self.move()
            self.finish()
        else:
            self.move(SLOT_KEYS // 2)

    def close(self) -> None:
        self.src.close()
        self.dst.close()


SLOT_KEYS = 60  # keys put in the slot that moves (the contract's keys, found by crc16)


def _keys_in_slot(slot: int, count: int) -> list[int]:
    found: list[int] = []
    cid = 1
    while len(found) < count:
        if key_slot(keys.session_key(cid).encode()) == slot:
            found.append(cid)
        cid += 1
    return found


def _walk_target_first(
    monkeypatch: pytest.MonkeyPatch,
    move: SlotMove,
    during: Callable[[], None],
    *,
    source_first: bool = False,
) -> None:
    """Run the per-node walks one at a time: the target first, then ``during()`` (the
    migration), then the others with the source last: without reading the moved slot
    again, SCAN misses what moved (the target was walked before it came, the source after
    it left). With ``source_first`` the other way round: SCAN sees what moved twice."""
    first, last = (move.source, move.target) if source_first else (move.target, move.source)

    async def ordered(clients: list[Redis], fn: Callable[[Redis], Awaitable[Any]]) -> list[Any]:
        ports = [int(c.connection_pool.connection_kwargs["port"]) for c in clients]
        order = sorted(
            range(len(clients)),
            key=lambda i: 0 if ports[i] == first else 2 if ports[i] == last else 1,
        )
        results: dict[int, Any] = {}
        for position, index in enumerate(order):
            results[index] = await fn(clients[index])
            if position == 0:
                during()
        return [results[i] for i in range(len(clients))]

    monkeypatch.setattr(walk_module, "each_node", ordered)


@pytest.fixture
async def moving(moving_cluster: RedisCluster) -> Any:
    for port in _primaries(moving_cluster):
        client = _sync(port)
        client.flushall()
        client.close()
    settings = Settings.load(env={"REDIS_URL": moving_cluster.url})
    async with open_redis(settings.redis_target()) as client:
        yield client


@pytest.mark.parametrize("finished", [True, False], ids=["moved", "still-moving"])
async def test_walks_are_exact_while_a_slot_migrates(
    moving, moving_cluster, monkeypatch, finished: bool
) -> None:
    slot = key_slot(keys.session_key(1).encode()) if finished else 777
    in_slot = _keys_in_slot(slot, SLOT_KEYS)
    others = list(range(100_000, 100_300))
    ids = sorted(in_slot + others)
    commands = []
    for cid in ids:
        commands.append(("HSET", keys.session_key(cid), "last_heartbeat", repr(time.time() - 5)))
        commands.append(("HSET", keys.session_key(cid), "username", f"p{cid}"))
    await bulk(moving, commands)
    source = _owner(moving_cluster, slot)
    target = next(p for p in _primaries(moving_cluster) if p != source)
    move = SlotMove(moving_cluster, slot, source, target)

    try:
        _walk_target_first(monkeypatch, move, lambda: move.migrate(finished))
        tier = await count_tier(moving, stale_after=300)
        assert tier.sessions == {str(cid) for cid in ids}
        monkeypatch.undo()
        if not finished:
            # the same again with the slot half moved from the start
            _walk_target_first(monkeypatch, move, lambda: None)
        found = await collect_keys(moving, keys.SESSION_PATTERN, count=20)
        assert found == {keys.session_key(cid) for cid in ids}
        listing = await list_sessions(moving)
        assert [row.character_id for row in listing.rows] == ids
    finally:
        monkeypatch.undo()
        if not finished:
            move.move()
            move.finish()
        move.close()


def _move_away(cluster: RedisCluster, slot: int) -> SlotMove:
    """A move of ``slot`` from its owner to another primary (not begun)."""
    source = _owner(cluster, slot)
    return SlotMove(cluster, slot, source, next(p for p in _primaries(cluster) if p != source))


async def _no_keys(*_args: Any, **_kwargs: Any) -> list[str]:
    return []


async def test_without_reading_moved_slots_again_the_walk_misses_keys(
    moving, moving_cluster, monkeypatch
) -> None:
    """The test above can fail: the same migration, the re-read turned off, loses keys."""
    slot = key_slot(keys.session_key(2).encode())
    in_slot = _keys_in_slot(slot, SLOT_KEYS)
    await bulk(moving, [("HSET", keys.session_key(cid), "username", "x") for cid in in_slot])
    move = _move_away(moving_cluster, slot)
    try:
        _walk_target_first(monkeypatch, move, lambda: move.migrate(True))
        monkeypatch.setattr(walk_module, "keys_in_slots", _no_keys)
        monkeypatch.setattr("echoes_ops.operations.tiercount.keys_in_slots", _no_keys)
        tier = await count_tier(moving, stale_after=300)
        assert len(tier.sessions) < SLOT_KEYS
    finally:
        monkeypatch.undo()
        move.close()


async def test_a_moved_slot_too_full_to_reread_fails_instead_of_answering_short(
    cluster_r, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GETKEYSINSLOT has no cursor: a moved slot over the limit is an error, never a silent cut."""
    from echoes_ops.client.nodes import primary_clients
    from echoes_ops.errors import BusyError

    same_slot = [f"{{tag}}:{n}" for n in range(4)]  # one hash tag: one slot
    slot = key_slot(same_slot[0].encode())
    await bulk(cluster_r, [("SET", k, "1") for k in same_slot])
    owners = [
        node
        for node in await primary_clients(cluster_r)
        if await node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
    ]
    assert len(owners) == 1
    monkeypatch.setattr(walk_module, "SLOT_KEYS_MAX", 2)
    with pytest.raises(BusyError, match="more than 2 keys"):
        await walk_module._node_slot_keys(owners[0], [slot])
    monkeypatch.setattr(walk_module, "SLOT_KEYS_MAX", 10)
    assert sorted(await walk_module._node_slot_keys(owners[0], [slot])) == same_slot


@pytest.mark.parametrize(
    ("reread", "source_first"),
    [(True, False), (False, False), (True, True)],
    ids=["reread", "without-reread", "reread-source-first"],
)
async def test_stats_family_counts_are_exact_while_a_slot_migrates(
    moving, moving_cluster, monkeypatch, reread: bool, source_first: bool
) -> None:
    """stats' and doctor's walk over every key (family counts, every session's TTL) counts
    each key once while a slot moves; without the re-read of the moved slot it misses them
    (walked target first) or counts them twice (source first)."""
    from echoes_ops.operations import keyspace

    slot = key_slot(keys.session_key(3).encode())
    in_slot = _keys_in_slot(slot, SLOT_KEYS)
    ids = sorted(in_slot + list(range(200_000, 200_300)))
    await bulk(moving, [("HSET", keys.session_key(cid), "username", f"p{cid}") for cid in ids])
    await bulk(moving, [("SET", f"other:{n}", "x") for n in range(100)])
    move = _move_away(moving_cluster, slot)
    try:
        _walk_target_first(monkeypatch, move, lambda: move.migrate(True), source_first=source_first)
        if not reread:
            monkeypatch.setattr(keyspace, "keys_in_slots", _no_keys)
        walk = await keyspace.walk_keyspace(moving, ttl_all_families=("sessions",))
        moved_to = _owner(moving_cluster, slot)
    finally:
        monkeypatch.undo()
        move.close()
    assert moved_to == move.target  # the slot moved during this walk
    sessions = walk.families["sessions"]
    if reread:
        assert sessions.keys == len(ids)
        assert sessions.ttl_read == len(ids)
        assert sessions.no_ttl == len(ids)  # none of them has a TTL
        assert walk.families["other"].keys == 100
        assert walk.scanned == len(ids) + 100  # each key scanned once, the moved ones too
    else:
        assert sessions.keys <= len(ids) - SLOT_KEYS  # the moved slot's sessions are missed
