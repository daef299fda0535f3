"""The pub/sub mode (contract/pubsub.py) on one real server: settings, the contract's split,
and reference workers publishing and hearing location and player messages with SPUBLISH /
SSUBSCRIBE in sharded mode (Redis 7.0 has shard channels on a standalone server too)."""

from __future__ import annotations

import json

import pytest
import redis

from echoes_ops.config import Settings
from echoes_ops.contract import envelopes, keys, pubsub
from echoes_ops.errors import ConfigError
from echoes_ops.operations.tail import plan_subscriptions
from echoes_ops.operations.tail.subscriptions import shard_plan
from tests.cli_helpers import cli
from tests.runtime_helpers import session
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)


def test_mode_setting_default_env_and_bad_value():
    assert Settings.load(env={}).redis_target().pubsub_mode == "classic"
    loaded = Settings.load(env={"REDIS_PUBSUB_MODE": " Sharded "})
    assert loaded.pubsub_mode == "sharded"
    assert loaded.redis_target().pubsub_mode == "sharded"
    with pytest.raises(ConfigError, match="REDIS_PUBSUB_MODE must be classic or sharded"):
        Settings.load(env={"REDIS_PUBSUB_MODE": "spublish"})


def test_split_keeps_broadcast_and_workers_classic():
    names = [
        keys.BROADCAST_CHANNEL,
        keys.WORKERS_CHANNEL,
        keys.location_channel("ruins"),
        keys.player_channel(7),
    ]
    assert pubsub.split_channels(names, "classic") == (tuple(names), ())
    classic, sharded = pubsub.split_channels(names, "sharded")
    assert classic == (keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL)
    assert sharded == ("location:ruins", "player:7")
    # patterns and other families are never shard channels
    for name in ("location:*", "player:05", "location:ruins:players", "game:other"):
        assert not pubsub.is_sharded(name, "sharded")
    assert pubsub.publish_command("player:7", "sharded") == "SPUBLISH"
    assert pubsub.publish_command("player:7", "classic") == "PUBLISH"
    assert pubsub.publish_command("game:broadcast", "sharded") == "PUBLISH"


def test_worker_mode_from_meta():
    assert pubsub.worker_mode({}) == "classic"  # a worker from before the field
    assert pubsub.worker_mode({"pubsub_mode": "sharded"}) == "sharded"
    assert pubsub.worker_mode({"pubsub_mode": "weird"}) is None


def _numsub(sync_r, channel: str) -> tuple[int, int]:
    """(classic subscribers, shard subscribers) of ``channel``."""
    classic = dict(sync_r.pubsub_numsub(channel)).get(channel, 0)
    raw = sync_r.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    shard = int(raw[1]) if raw else 0
    return int(classic), shard


@pytest.mark.parametrize("mode", ["classic", "sharded"])
async def test_workers_deliver_in_either_mode(workers, sync_r, mode):
    a = await workers("a", pubsub_mode=mode)
    b = await workers("b", pubsub_mode=mode)
    assert sync_r.hget(keys.worker_meta_key("a"), "pubsub_mode") == mode
    await a.connect_player(session(1, "ruins"))
    await b.connect_player(session(2, "ruins"))
    # where each worker listens: classic SUBSCRIBE or SSUBSCRIBE, never both
    expect = (0, 2) if mode == "sharded" else (2, 0)
    assert _numsub(sync_r, "location:ruins") == expect
    assert _numsub(sync_r, "player:2") == ((0, 1) if mode == "sharded" else (1, 0))
    assert _numsub(sync_r, keys.BROADCAST_CHANNEL) == (2, 0)  # classic in both modes

    env = envelopes.location_update(
        "ruins", {"type": "location_update", "data": {"message": "hi"}}, msg_id="m1"
    )
    assert await a.publish(env) == 2
    await eventually(lambda: len(b.connections[2].inbox) == 1)
    await a.publish(
        envelopes.personal_message(2, {"type": "combat_update", "data": {}}, msg_id="m2")
    )
    await eventually(lambda: len(b.connections[2].inbox) == 2)
    await a.publish(envelopes.global_broadcast({"type": "x", "data": {}}, msg_id="m3"))
    await eventually(lambda: len(b.connections[2].inbox) == 3)
    assert b.stats.duplicates == 0

    # a player who leaves is unsubscribed from its shard channel too
    await b.disconnect_player(2)
    await eventually(lambda: _numsub(sync_r, "player:2") == (0, 0))


async def test_modes_do_not_hear_each_other(workers, sync_r):
    """The reason doctor checks agreement: a classic publisher and a sharded subscriber
    share a channel name and nothing else."""
    classic = await workers("c", pubsub_mode="classic")
    sharded = await workers("s", pubsub_mode="sharded")
    await sharded.connect_player(session(5, "bunker"))
    env = envelopes.personal_message(5, {"type": "combat_update", "data": {}}, msg_id="x1")
    assert await classic.publish(env) == 0
    assert await sharded.publish(env) == 1
    await eventually(lambda: len(sharded.connections[5].inbox) == 1)


async def test_sharded_worker_reconnects_after_kill(workers, sync_r):
    # dead_after leaves a loaded machine room (a killed socket is seen by its close, not by
    # the PING deadline); the count is at least one, a stall's own reconnect aside
    w = await workers("k", pubsub_mode="sharded", idle_ping=0.2, dead_after=2.0)
    await w.connect_player(session(9, "overpass"))
    for client in sync_r.client_list():
        if client.get("name") == "k" and int(client.get("ssub", 0) or 0) > 0:
            sync_r.client_kill_filter(_id=client["id"])
    await eventually(lambda: w.stats.reconnects >= 1 and w.subscribed.is_set(), timeout=10)
    await eventually(lambda: _numsub(sync_r, "player:9") == (0, 1))
    sync_r.execute_command(
        "SPUBLISH",
        "player:9",
        envelopes.personal_message(9, {"type": "t", "data": {}}, msg_id="after").to_json(),
    )
    await eventually(lambda: len(w.connections[9].inbox) == 1)


# -- operator publishers follow the mode --------------------------------------------------


def _listen(redis_url: str, sharded: list[str], classic: list[str]):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ps = client.pubsub()
    if sharded:
        ps.ssubscribe(*sharded)
    if classic:
        ps.subscribe(*classic)
    for _ in range(len(sharded) + len(classic)):
        assert ps.get_message(timeout=2)["type"] in ("ssubscribe", "subscribe")
    return client, ps


def _next(ps) -> dict:
    message = ps.get_message(timeout=3)
    assert message is not None, "nothing received"
    return message


def test_broadcast_and_kick_publish_sharded(redis_url, sync_r):
    env = {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana", "REDIS_PUBSUB_MODE": "sharded"}
    sync_r.hset(keys.location_cache_key("ruins"), mapping={"id": "ruins", "name": "Ruins"})
    sync_r.hset(keys.session_key(5), mapping={"character_id": "5", "location_id": "ruins"})
    sync_r.sadd(keys.presence_key("ruins"), 5)
    client, ps = _listen(redis_url, ["location:ruins", "player:5"], [keys.BROADCAST_CHANNEL])
    try:
        dry = cli("broadcast", "location", "ruins", "Quiet", "--dry-run", "--json", env=env)
        assert dry.code == 0, dry.stderr
        assert json.loads(dry.stdout)["audience"] == {
            "channel_subscribers": 1,
            "patterns": 0,
            "sharded": True,
        }
        out = cli("broadcast", "location", "ruins", "Rocks fall", "--json", env=env)
        assert out.code == 0, out.stderr
        assert json.loads(out.stdout)["receivers"] == 1
        got = _next(ps)
        assert (got["type"], got["channel"]) == ("smessage", "location:ruins")
        out = cli("broadcast", "player", "5", "Psst", "--json", env=env)
        assert out.code == 0, out.stderr
        got = _next(ps)
        assert (got["type"], got["channel"]) == ("smessage", "player:5")
        out = cli("broadcast", "global", "All", "--yes", "--json", env=env)
        assert out.code == 0, out.stderr
        got = _next(ps)
        assert (got["type"], got["channel"]) == ("message", keys.BROADCAST_CHANNEL)
        out = cli("sessions", "kick", "5", "--reason", "afk", "--yes", env=env)
        assert out.code == 0, out.stderr
        got = _next(ps)
        assert (got["type"], got["channel"]) == ("smessage", "player:5")
        assert json.loads(got["data"])["payload"]["type"] == "kicked"
    finally:
        ps.close()
        client.close()


# -- tail follows the mode ----------------------------------------------------------------


def test_tail_plan_in_sharded_mode():
    subs = plan_subscriptions(["game:broadcast", "location:*", "player:*", "player:9"])
    assert shard_plan(subs, "classic", locations=["ruins"], players=[5]) == subs
    plan = shard_plan(subs, "sharded", locations=["ruins", "bunker"], players=[5])
    assert plan.channels == ("game:broadcast",)
    assert plan.patterns == ("location:*", "player:*")  # classic publishers still heard
    assert plan.shard == ("player:9", "location:bunker", "location:ruins", "player:5")
    assert "4 shard channel(s)" in plan.describe()


async def test_tail_sharded_hears_shard_and_classic(redis_url, sync_r):
    from dataclasses import replace

    from tests.tail_helpers import Tailer

    target = replace(Settings.from_dsn(redis_url).redis_target(), pubsub_mode="sharded")
    sync_r.sadd(keys.LOCATION_INDEX_KEY, "ruins", "bunker")
    channels = ("location:*", "player:5", keys.BROADCAST_CHANNEL)
    async with Tailer(target, channels) as tailer:
        assert _numsub(sync_r, "location:bunker") == (0, 1)
        loc = envelopes.location_update("ruins", {"type": "location_update", "data": {}})
        mine = envelopes.personal_message(5, {"type": "combat_update", "data": {}})
        other = envelopes.personal_message(6, {"type": "combat_update", "data": {}})
        sync_r.spublish(loc.channel, loc.to_json())
        sync_r.spublish(other.channel, other.to_json())  # not subscribed: not heard
        sync_r.spublish(mine.channel, mine.to_json())
        sync_r.publish(keys.BROADCAST_CHANNEL, envelopes.global_broadcast({"type": "x"}).to_json())
        sync_r.publish(loc.channel, loc.to_json())  # a classic publisher: the pattern hears it
        got = [await tailer.message() for _ in range(4)]
        assert [(m.channel, m.pattern) for m in got] == [
            ("location:ruins", None),
            ("player:5", None),
            (keys.BROADCAST_CHANNEL, None),
            ("location:ruins", "location:*"),
        ]
