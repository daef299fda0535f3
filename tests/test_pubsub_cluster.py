"""The game tier on a real Redis Cluster (3 primaries, 3 replicas): reference workers in both
pub/sub modes, slot-grouped writes, tail on every node owning a shard channel, broadcasts,
and a worker that reconnects and resubscribes after a primary is killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import replace

import pytest
import redis
from redis.crc import key_slot

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import envelopes, keys
from echoes_ops.runtime.slotwrites import Transaction
from tests.cli_helpers import cli
from tests.conftest import started_workers
from tests.runtime_helpers import LOCATIONS, session
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


def owners(cluster_url: str) -> dict[int, str]:
    """slot -> primary address, from CLUSTER SLOTS."""
    host, port = cluster_url.split("//", 1)[1].split("/", 1)[0].split(":")
    client = redis.Redis(host=host, port=int(port), decode_responses=True)
    try:
        out = {}
        for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            for slot in range(int(start), int(end) + 1):
                out[slot] = f"{primary[0]}:{primary[1]}"
        return out
    finally:
        client.close()


def owner_of(slots: dict[int, str], name: str) -> str:
    return slots[key_slot(name.encode())]


@pytest.mark.parametrize("mode", ["classic", "sharded"])
async def test_workers_deliver_on_the_cluster(cluster_workers, cluster_url, mode):
    a = await cluster_workers("ca", pubsub_mode=mode)
    b = await cluster_workers("cb", pubsub_mode=mode)
    slots = owners(cluster_url)
    for cid in range(1, 13):
        await (a if cid % 2 else b).connect_player(session(cid, LOCATIONS[cid % 4]))
    if mode == "sharded":
        # one subscribed connection per primary owning one of its shard channels
        wanted = {owner_of(slots, keys.location_channel(loc)) for loc in LOCATIONS}
        wanted |= {owner_of(slots, keys.player_channel(c)) for c in range(2, 13, 2)}
        assert set(b._subscriber.shard_nodes()) >= wanted
        assert sum(b._subscriber.shard_nodes().values()) == len(LOCATIONS) + 6
    else:
        assert len(b._subscriber.nodes) == 1  # classic: one connection, any node hears all
    for loc in LOCATIONS:
        env = envelopes.location_update(loc, {"type": "location_update", "data": {}})
        await a.publish(env)
    for cid in range(1, 13):
        await b.publish(envelopes.personal_message(cid, {"type": "combat_update", "data": {}}))
    await a.publish(envelopes.global_broadcast({"type": "x", "data": {}}))
    # every player: its location's update, its personal message, the broadcast
    await eventually(lambda: a.stats.delivered + b.stats.delivered == 12 * 3, timeout=10)
    assert a.stats.duplicates == b.stats.duplicates == 0


async def test_moves_and_connects_are_grouped_per_slot(cluster_workers, cluster_url):
    """The single-server MULTI would be CROSSSLOT here: each slot's group is one MULTI,
    and the end state is the same as on one server."""
    w = await cluster_workers("cw")
    await w.connect_player(session(7, "overpass"))
    await w.move_player(7, "ruins", stamina=3)
    host_url = cluster_url
    async with open_redis(Settings.from_dsn(host_url).redis_target()) as r:
        assert await r.sismember(keys.presence_key("ruins"), 7)
        assert not await r.sismember(keys.presence_key("overpass"), 7)
        assert await r.hget(keys.session_key(7), "location_id") == "ruins"
        assert 0 < await r.ttl(keys.session_key(7)) <= keys.SESSION_TTL
        assert await r.hget(keys.worker_connections_key("cw"), "7") == "connected"
        tx = Transaction(r)
        for key in (keys.presence_key("a"), keys.session_key(1), keys.presence_key("b")):
            tx.add(key, lambda p, k=key: p.exists(k))
        groups = tx.groups()
        assert len(groups) == len({key_slot(k.encode()) for k in tx_keys(tx)})
        assert await tx.execute() == [0, 0, 0]
    await w.disconnect_player(7)
    async with open_redis(Settings.from_dsn(host_url).redis_target()) as r:
        assert not await r.exists(keys.session_key(7))
        assert not await r.sismember(keys.presence_key("ruins"), 7)


def tx_keys(tx: Transaction) -> list[str]:
    return [key for key, _ in tx._ops]


async def test_tail_listens_on_every_node_owning_a_shard_channel(cluster_url, cluster_r):
    from tests.tail_helpers import Tailer

    target = replace(Settings.from_dsn(cluster_url).redis_target(), pubsub_mode="sharded")
    places = [f"place{n}" for n in range(12)]
    await cluster_r.sadd(keys.LOCATION_INDEX_KEY, *places)
    slots = owners(cluster_url)
    nodes = {owner_of(slots, keys.location_channel(loc)) for loc in places}
    assert len(nodes) == 3  # spread over every primary: the test means something
    async with Tailer(target, ("location:*", keys.BROADCAST_CHANNEL)) as tailer:
        for loc in places:
            env = envelopes.location_update(loc, {"type": "location_update", "data": {}})
            await cluster_r.spublish(env.channel, env.to_json())
        await cluster_r.publish(keys.BROADCAST_CHANNEL, envelopes.global_broadcast({}).to_json())
        got = {(await tailer.message()).channel for _ in range(len(places) + 1)}
        assert got == {keys.location_channel(loc) for loc in places} | {keys.BROADCAST_CHANNEL}


def test_broadcast_on_the_cluster_in_sharded_mode(cluster_url, redis_cluster):
    env = {
        "REDIS_URL": cluster_url,
        "ECHOES_OPS_OPERATOR": "dana",
        "REDIS_PUBSUB_MODE": "sharded",
    }
    owner = owner_of(owners(cluster_url), "player:5")
    host, port = owner.split(":")
    node = redis.Redis(host=host, port=int(port), decode_responses=True)
    listener = node.pubsub()
    listener.ssubscribe("player:5")
    assert listener.get_message(timeout=2)["type"] == "ssubscribe"
    try:
        out = cli("broadcast", "player", "5", "Psst", "--json", env=env)
        assert out.code == 0, out.stderr
        got = listener.get_message(timeout=3)
        assert (got["type"], got["channel"]) == ("smessage", "player:5")
    finally:
        listener.close()
        node.close()


# -- failover -------------------------------------------------------------------------------


async def test_worker_resubscribes_after_its_primary_is_killed(private_cluster):
    """kill -9 the primary owning a worker's shard channel: its replica is promoted, the
    worker reconnects and resubscribes there, and delivery resumes; what was lost was sent
    inside the outage."""
    private_cluster.start()
    url = private_cluster.url
    slots = owners(url)
    channel = keys.location_channel("ruins")
    victim = owner_of(slots, channel)
    port = int(victim.rsplit(":", 1)[1])
    async with started_workers(url) as start:
        w = await start("fw", pubsub_mode="sharded", idle_ping=0.3, dead_after=1.0)
        w.options.record_deliveries = True
        await w.connect_player(session(3, "ruins"))
        async with open_redis(Settings.from_dsn(url).redis_target()) as pub:
            sent: list[tuple[str, float]] = []
            killed_at = None
            i = 0

            async def publish_until_delivery_resumed() -> bool:
                """One message every 50 ms (the primary killed at the 20th) until one sent
                after the failover has reached the worker."""
                nonlocal i, killed_at
                i += 1
                if i == 20:
                    os.kill(private_cluster.node(port).pid(), signal.SIGKILL)
                    killed_at = time.time()
                env = envelopes.location_update(
                    "ruins", {"type": "location_update", "data": {}}, msg_id=f"f{i}"
                )
                try:
                    await pub.spublish(channel, env.to_json())
                    sent.append((f"f{i}", time.time()))
                except (redis.RedisError, OSError):
                    pass  # the primary is away: nothing published
                await asyncio.sleep(0.05)
                return bool(
                    w.stats.reconnects and len(sent) > 20 and sent[-1][0] in w.stats.received_ids
                )

            await eventually(publish_until_delivery_resumed, 40, "delivery to resume", interval=0)
        assert killed_at is not None
        assert w.stats.reconnects >= 1
        assert sent[-1][0] in w.stats.received_ids, "delivery did not resume"
        (_lost_at, back_at), *_ = w.stats.gaps
        lost = [t for m, t in sent if m not in w.stats.received_ids]
        assert all(killed_at - 0.5 <= t <= back_at + 0.5 for t in lost), (lost, killed_at, back_at)
        alive = next(p for p in private_cluster.ports if p != port)
        now = owners(f"redis://{private_cluster.host}:{alive}/0")
        assert owner_of(now, channel) != victim  # the replica was promoted


async def test_dashboard_live_feed_follows_the_sharded_mode(cluster_url, cluster_r):
    """The dashboard's Live tab reads the tail through its poller process: with
    REDIS_PUBSUB_MODE=sharded on the cluster it hears SPUBLISHed location messages."""
    from echoes_ops.tui.process_source import ProcessSource

    settings = Settings.load(env={"REDIS_URL": cluster_url, "REDIS_PUBSUB_MODE": "sharded"})
    places = [f"place{n}" for n in range(6)]
    await cluster_r.sadd(keys.LOCATION_INDEX_KEY, *places)
    source = ProcessSource(settings)
    status: list[str] = []
    events = source.tail(status.append)
    try:
        first = asyncio.ensure_future(anext(events))
        await eventually(lambda: bool(status), timeout=15)
        assert "6 shard channel(s)" in status[0]
        env = envelopes.location_update("place3", {"type": "location_update", "data": {}})
        await cluster_r.spublish(env.channel, env.to_json())
        event = await asyncio.wait_for(first, 10)
        assert event.channel == "location:place3"  # type: ignore[union-attr]
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await source.close()


async def test_tail_reports_a_gap_and_resumes_after_a_failover(private_cluster):
    """kill -9 the primary owning a shard channel tail listens to: tail yields a gap once
    it is subscribed again on the promoted replica, then that channel's messages again."""
    from echoes_ops.operations.tail import TailGap, TailMessage
    from tests.tail_helpers import Tailer

    private_cluster.start()
    url = private_cluster.url
    channel = keys.location_channel("ruins")
    victim = owner_of(owners(url), channel)
    port = int(victim.rsplit(":", 1)[1])
    alive = next(p for p in private_cluster.ports if p != port)
    target = replace(
        Settings.from_dsn(f"redis://{private_cluster.host}:{alive}/0?cluster=true").redis_target(),
        pubsub_mode="sharded",
    )
    async with Tailer(target, (channel,), dead_after=1.0) as tailer:
        os.kill(private_cluster.node(port).pid(), signal.SIGKILL)

        async def a_gap() -> TailGap | None:
            with contextlib.suppress(AssertionError):  # no event within the second
                event = await tailer.next(timeout=1.0)
                if isinstance(event, TailGap):
                    return event
            return None

        gap = await eventually(a_gap, 40, "tail to report the gap", interval=0)
        assert gap.duration > 0
        assert gap.error  # the gap says why delivery stopped
        async with open_redis(target) as pub:
            env = envelopes.location_update("ruins", {"type": "location_update", "data": {}})
            await pub.spublish(channel, env.to_json())
        message = await tailer.next(timeout=5)
        assert isinstance(message, TailMessage)
        assert message.channel == channel


async def test_an_uncovered_slot_is_retried_like_a_dropped_connection(cluster_r, monkeypatch):
    """Mid-failover the slot map can lack a slot: redis-py raises SlotNotCoveredError,
    which is not even a RedisError; the subscriber turns it into a ConnectionError, which
    the worker and tail retry."""
    from echoes_ops.client.subscriber import ShardMovedError, Subscriber

    await cluster_r.initialize()

    def uncovered(self, slot, *args, **kwargs):
        raise redis.exceptions.SlotNotCoveredError(f'Slot "{slot}" not covered by the cluster.')

    monkeypatch.setattr(type(cluster_r.nodes_manager), "get_node_from_slot", uncovered)
    subscriber = Subscriber(cluster_r, dead_after=3)
    with pytest.raises(ShardMovedError, match="has no primary yet") as caught:
        await subscriber.start(shard=["location:ruins"])
    assert isinstance(caught.value, redis.exceptions.ConnectionError)
    await subscriber.aclose()


def test_broadcast_counts_classic_subscribers_on_every_node(
    cluster_url, redis_cluster, sync_cluster_static
):
    """PUBSUB NUMSUB counts one node's clients: on a cluster the audience is the sum over
    every node (a subscriber may be connected to any primary or replica)."""
    env = {"REDIS_URL": cluster_url, "ECHOES_OPS_OPERATOR": "dana"}
    clients = [redis.Redis(host=redis_cluster.host, port=p) for p in redis_cluster.ports[:4]]
    listeners = [c.pubsub() for c in clients]
    try:
        for listener in listeners:
            listener.subscribe("location:ruins")
            assert listener.get_message(timeout=2)["type"] == "subscribe"
        out = cli("broadcast", "location", "ruins", "Quiet", "--dry-run", "--json", env=env)
        assert out.code == 0, out.stderr
        assert json.loads(out.stdout)["audience"]["channel_subscribers"] == 4
    finally:
        for listener in listeners:
            listener.close()
        for client in clients:
            client.close()


@pytest.fixture
def sync_cluster_static(cluster_url, redis_cluster):
    """The static cache entry a location broadcast is checked against."""
    client = redis.RedisCluster(host=redis_cluster.host, port=redis_cluster.ports[0])
    try:
        client.hset(keys.location_cache_key("ruins"), mapping={"id": "ruins", "name": "Ruins"})
    finally:
        client.close()


async def test_doctor_warns_when_cluster_workers_disagree_on_the_mode(cluster_workers, cluster_url):
    await cluster_workers("dw", pubsub_mode="sharded")
    env = {"REDIS_URL": cluster_url, "REDIS_PUBSUB_MODE": "classic"}
    out = await asyncio.to_thread(cli, "doctor", "--json", env=env)
    checks = {c["id"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["pubsub_mode"]["verdict"] == "warn", checks["pubsub_mode"]
    assert checks["pubsub_mode"]["details"]["workers"] == {"dw": "sharded"}
    env["REDIS_PUBSUB_MODE"] = "sharded"
    out = await asyncio.to_thread(cli, "doctor", "--json", env=env)
    checks = {c["id"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["pubsub_mode"]["verdict"] == "ok", checks["pubsub_mode"]
