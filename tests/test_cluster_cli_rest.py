"""The commands of docs/cli.md that no other test ran on the cluster through the CLI (found by
``tests/test_cluster_coverage.py``): ``locks extend``, ``cache invalidate``, ``warmup``,
``tail`` (classic and sharded), ``dashboard --json`` and ``metrics serve``, on one server and
on the 3-primary / 3-replica cluster, each answer checked against the tier. ``flags get|list``
read PostgreSQL only; their round trip with ``flags set`` and the tier's mirror is here too."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as SyncCluster

from echoes_ops.contract import envelopes, keys
from echoes_ops.errors import ExitCode
from echoes_ops.operations.migrations import migrate
from tests.cli_helpers import cli
from tests.cluster_coverage import note_answer_from_cluster, note_subprocess
from tests.conftest import BUNDLED_GAMEDATA
from tests.test_metrics import families, serving, value
from tests.waiting import wait_until
from tests.warmup_helpers import PLAYERS, WINDOW, seed


@pytest.fixture
def tier_sync(tier_url: str, topology: str) -> Iterator[Any]:
    """A synchronous client of the tier: a cluster client on the cluster."""
    plain = tier_url.replace("?cluster=true", "")
    client: Any = (
        SyncCluster.from_url(plain, decode_responses=True)
        if topology == "cluster"
        else redis.Redis.from_url(plain, decode_responses=True)
    )
    yield client
    client.close()


def _json(env: dict[str, str], *args: str, codes: tuple[int, ...] = (0,)) -> Any:
    out = cli(*args, "--json", env=env)
    assert out.code in codes, (args, out.code, out.stderr)
    return json.loads(out.stdout)


def test_locks_extend_only_with_the_token(tier_url, tier_sync) -> None:
    alice = {"REDIS_URL": tier_url, "ECHOES_OPS_OPERATOR": "alice"}
    bob = {"REDIS_URL": tier_url, "ECHOES_OPS_OPERATOR": "bob"}
    held = _json(alice, "locks", "hold", "spawn_manager", "--ttl", "10", "--reason", "r")
    lock = keys.lock_key("spawn_manager")
    refused = cli("locks", "extend", "spawn_manager", "--ttl", "600", env=bob)
    assert refused.code == ExitCode.REFUSED
    assert tier_sync.pttl(lock) <= 10_000
    extended = _json(
        bob, "locks", "extend", "spawn_manager", "--ttl", "600", "--token", held["token"]
    )
    assert extended["name"] == "spawn_manager"
    assert 590_000 < tier_sync.pttl(lock) <= 600_000
    assert 590_000 < tier_sync.pttl(keys.lock_info_key("spawn_manager")) <= 600_000
    assert tier_sync.get(lock) == held["token"]


def test_flags_get_and_list_read_postgresql_and_the_mirror(tier_url, tier_sync, database_url):
    asyncio.run(migrate(database_url))
    env = {"REDIS_URL": tier_url, "DATABASE_URL": database_url, "ECHOES_OPS_OPERATOR": "dana"}
    before = _json(env, "flags", "get", "REDIS_ENABLED")
    assert (before["value"], before["is_default"]) == ("true", True)
    _json(env, "flags", "set", "REDIS_ENABLED", "false", "--reason", "outage", "--yes")
    got = _json(env, "flags", "get", "REDIS_ENABLED")
    assert (got["value"], got["updated_by"], got["reason"]) == ("false", "dana", "outage")
    listed = _json(env, "flags", "list")["flags"]
    assert [(f["name"], f["value"]) for f in listed] == [("REDIS_ENABLED", "false")]
    mirror = tier_sync.hgetall(keys.FLAGS_KEY)
    assert (mirror["REDIS_ENABLED"], mirror["REDIS_ENABLED:version"]) == ("false", got["version"])


def test_cache_invalidate_deletes_the_key_and_status_sees_it(tier_url, tier_sync) -> None:
    env = {"REDIS_URL": tier_url}
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    status = _json(env, "cache", "status", "--gamedata", str(BUNDLED_GAMEDATA))
    assert status["in_sync"] is True
    item_id = sorted(k.split(":")[1] for k in tier_sync.scan_iter(match="item:*:def"))[0]
    done = _json(env, "cache", "invalidate", "item", item_id, "--yes")
    assert (done["keys"], done["deleted"]) == ([keys.item_def_key(item_id)], 1)
    assert tier_sync.exists(keys.item_def_key(item_id)) == 0
    assert tier_sync.hexists(keys.GAMEDATA_VERSION_KEY, "content_hash") is False
    # the next preload is not a no-op and restores the key
    again = _json(env, "preload", "--gamedata", str(BUNDLED_GAMEDATA))
    assert again["diff"]["item"]["added_ids"] == [item_id]
    assert tier_sync.exists(keys.item_def_key(item_id)) == 1


def test_warmup_writes_every_session_and_a_second_run_nothing(tier_url, tier_sync, database_url):
    characters = 120
    seed(database_url, characters)
    env = {"REDIS_URL": tier_url, "DATABASE_URL": database_url}
    args = ("warmup", "--what", PLAYERS, "--active-within", WINDOW)
    first = _json(env, *args)
    assert (first["ok"], first["characters"]) == (True, characters)
    assert first["sessions"]["written"] == characters
    for cid in (1, 60, characters):
        session = tier_sync.hgetall(keys.session_key(cid))
        assert session["websocket_connected"] == "false"
        assert tier_sync.ttl(keys.session_key(cid)) > 0
    again = _json(env, *args)
    assert (again["sessions"]["written"], again["inventories"]["written"]) == (0, 0)
    assert again["sessions"]["unchanged"] == again["inventories"]["unchanged"] == characters


def _subscribers(tier_url: str, topology: str) -> int:
    """Pattern subscriptions on every node of the tier (classic pub/sub: per node)."""
    plain = tier_url.replace("?cluster=true", "")
    if topology == "standalone":
        nodes = [redis.Redis.from_url(plain)]
    else:
        seed = SyncCluster.from_url(plain)
        try:
            nodes = [redis.Redis(host=n.host, port=n.port) for n in seed.get_nodes()]
        finally:
            seed.close()
    try:
        return sum(int(node.pubsub_numpat()) for node in nodes)
    finally:
        for node in nodes:
            node.close()


def test_tail_receives_what_any_node_publishes(tier_url, tier_sync, topology) -> None:
    def publish() -> None:
        wait_until(lambda: _subscribers(tier_url, topology) >= 2, what="tail to subscribe")
        for envelope in (
            envelopes.global_broadcast({"type": "server_announcement", "data": {"message": "M"}}),
            envelopes.location_update("ruins", {"type": "location_update", "data": {}}),
        ):
            tier_sync.publish(envelope.channel, envelope.to_json())

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    out = cli("tail", "--json", "--count", "2", "--timeout", "20", env={"REDIS_URL": tier_url})
    thread.join(20)
    assert out.code == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(d["channel"], d["type"]) for d in lines] == [
        (keys.BROADCAST_CHANNEL, "global_broadcast"),
        (keys.location_channel("ruins"), "location_update"),
    ]


def _node_clients(cluster_url: str) -> list[redis.Redis]:
    seed = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""))
    try:
        return [redis.Redis(host=n.host, port=n.port) for n in seed.get_nodes()]
    finally:
        seed.close()


def test_tail_in_sharded_mode_hears_every_primary(cluster_url) -> None:
    """REDIS_PUBSUB_MODE=sharded: location channels are shard channels, each on the primary
    owning its slot; tail listens on all of them, and hears the classic broadcast too."""
    places = [f"place{n}" for n in range(12)]
    channels = [keys.location_channel(loc) for loc in places]
    cluster = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    cluster.sadd(keys.LOCATION_INDEX_KEY, *places)
    owners = {cluster.get_node_from_key(channel).name for channel in channels}
    assert len(owners) == 3  # spread over every primary: the test means something

    def subscribed() -> bool:
        nodes = _node_clients(cluster_url)
        try:
            shard = sum(
                int(count) for node in nodes for _ch, count in node.pubsub_shardnumsub(*channels)
            )
            classic = sum(int(node.pubsub_numsub(keys.BROADCAST_CHANNEL)[0][1]) for node in nodes)
        finally:
            for node in nodes:
                node.close()
        return shard >= len(channels) and classic >= 1

    def publish() -> None:
        wait_until(subscribed, what="tail to subscribe on every owning primary")
        for loc in places:
            envelope = envelopes.location_update(loc, {"type": "location_update", "data": {}})
            cluster.spublish(envelope.channel, envelope.to_json())
        cluster.publish(keys.BROADCAST_CHANNEL, envelopes.global_broadcast({}).to_json())

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    env = {"REDIS_URL": cluster_url, "REDIS_PUBSUB_MODE": "sharded"}
    count = str(len(places) + 1)
    out = cli("tail", "--json", "--count", count, "--timeout", "20", env=env)
    thread.join(20)
    cluster.close()
    assert out.code == 0, out.stderr
    got = {json.loads(line)["channel"] for line in out.stdout.splitlines()}
    assert got == {*channels, keys.BROADCAST_CHANNEL}


def _small_tier(client: Any) -> None:
    for cid in range(1, 13):
        client.hset(keys.session_key(cid), mapping={"worker_id": "w1", "location_id": "ruins"})
        client.sadd(keys.presence_key("ruins"), cid)
    client.set(keys.lock_key("job"), "ops#1", px=600_000)


def test_dashboard_json_reads_the_whole_tier(tier_url, tier_sync, topology, request) -> None:
    _small_tier(tier_sync)
    reading = _json({"REDIS_URL": tier_url}, "dashboard")
    tier = reading["tier"]
    assert (tier["sessions"], tier["players_in_locations"], tier["locks"]) == (12, 12, 1)
    assert reading["drift"]["counts"]["no_ttl_session"] == 12
    assert [lock["name"] for lock in reading["snapshot"]["locks"]] == ["job"]
    cluster = reading["snapshot"]["cluster"]
    if topology == "standalone":
        assert cluster is None
    else:
        assert cluster is not None
        text = json.dumps(cluster)
        assert text.count("primary") >= 3, text
        for seed in request.getfixturevalue("redis_cluster").seeds:  # every node, by port
            assert seed.rsplit(":", 1)[1] in text, (seed, text)
        note_answer_from_cluster("dashboard")  # read by its poller, a child process


def test_metrics_serve_counts_the_whole_tier(tier_url, tier_sync) -> None:
    _small_tier(tier_sync)
    note_subprocess(["metrics", "serve"], {"REDIS_URL": tier_url})
    with serving({"REDIS_URL": tier_url}) as server:
        scraped = families(server.scrape())
    assert value(scraped, "echoes_redis_up") == 1
    assert value(scraped, "echoes_redis_sessions") == 12
    assert value(scraped, "echoes_redis_players_online") == 12
    assert value(scraped, "echoes_redis_locks_held") == 1
