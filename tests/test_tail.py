"""``tail``: live decoded pub/sub against a real Redis — every envelope family, filters,
explicit channels and patterns, surviving restarts and silent connections (the CLI's lines,
exit codes and Ctrl-C: test_tail_cli.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
import redis

from echoes_ops.contract import envelopes
from echoes_ops.errors import AuthError, ExitCode, UnreachableError
from echoes_ops.local.redis_server import RedisServer, free_port
from echoes_ops.operations.tail import (
    DEFAULT_CHANNELS,
    TailArgumentError,
    TailFilter,
    TailGap,
    is_pattern,
    plan_subscriptions,
    summarize,
    tail,
    to_message,
)
from tests.tail_helpers import (
    PICKED_UP,
    Tailer,
    broadcast,
    combat,
    joined,
    picked_up,
    publish,
    target_of,
)
from tests.waiting import eventually

# -- decoding and summaries ---------------------------------------------------------------


async def test_every_family_is_received_decoded_and_summarised(redis_url, sync_r):
    async with Tailer(target_of(redis_url)) as t:
        publish(sync_r, broadcast(), picked_up(), combat(), joined())
        got = [await t.message() for _ in range(4)]

    assert [(m.channel, m.pattern, m.type, m.summary) for m in got] == [
        (
            "game:broadcast",
            None,
            "global_broadcast",
            "announcement: Server maintenance in 5 minutes",
        ),
        (
            "location:overpass",
            "location:*",
            "location_update",
            "overpass: Jocaru picked up 3x Iron Ore (exclude 5)",
        ),
        ("player:5", "player:*", "personal_message", "to 5: combat_update You dealt 12 damage!"),
        ("game:workers", None, "worker_join", "worker-3 joined"),
    ]
    for message in got:
        assert message.envelope is not None
        assert message.raw is None
        assert message.latency is not None
        assert 0 <= message.latency < 5
        assert abs(message.received_at - time.time()) < 5
    assert got[2].envelope is not None
    assert got[2].envelope.player_id == 5
    as_json = json.loads(json.dumps(got[1].as_dict()))
    assert as_json["event"] == "message"
    assert as_json["message"]["exclude_player_id"] == 5
    assert as_json["message"]["payload"] == PICKED_UP


async def test_undecodable_messages_are_shown_and_tail_keeps_going(redis_url, sync_r):
    async with Tailer(target_of(redis_url)) as t:
        publish(
            sync_r,
            ("game:broadcast", "not json at all"),
            ("player:9", b"\xff\xfe binary"),
            ("location:overpass", '{"no": "type"}'),
            ("game:workers", '{"type": "location_update", "payload": [1, 2]}'),
            broadcast(),
        )
        junk = [await t.message() for _ in range(4)]
        good = await t.message()

    assert [m.type for m in junk] == ["undecodable"] * 4
    assert all(m.envelope is None and m.error and m.latency is None for m in junk)
    assert junk[0].summary == "not JSON: not json at all"
    assert junk[0].raw == "not json at all"
    assert junk[1].raw == "\\xff\\xfe binary"
    assert junk[2].summary.startswith("has no 'type'")
    assert "payload that is not an object" in junk[3].summary
    assert json.loads(json.dumps(junk[1].as_dict()))["message"] is None
    assert good.type == "global_broadcast"


def test_summaries_of_other_shapes():
    state = envelopes.personal_message(7, {"type": "state_update", "data": {"player": {"hp": 3}}})
    assert summarize(state) == 'to 7: state_update {"player":{"hp":3}}'
    event = envelopes.global_broadcast({"type": "event_start", "data": {"message": "Double XP"}})
    assert summarize(event) == "event_start: Double XP"
    npc = envelopes.location_update("ruins", {"type": "npc_spawn", "data": {"message": "A raider"}})
    assert summarize(npc) == "ruins: npc_spawn A raider"
    leave = envelopes.worker_event("worker_leave", "worker-3", reason="shutdown")
    assert summarize(leave) == "worker-3 left (reason=shutdown)"
    flip = envelopes.worker_event("config_changed", "w1", key="redis_enabled", value=False)
    assert summarize(flip) == "config changed key=redis_enabled value=false (by w1)"
    long = envelopes.global_broadcast({"data": {"message": "line one\nline two " + "x" * 500}})
    text = summarize(long)
    assert "\n" not in text
    assert text.startswith("announcement: line one line two x")
    assert len(text) == 200
    assert text.endswith("…")
    unknown = to_message("game:broadcast", '{"type": "mystery", "payload": {"message": "hi"}}')
    assert (unknown.type, unknown.summary) == ("mystery", "hi")


# -- filters and subscriptions ------------------------------------------------------------


FILTER_SAMPLES = {
    "picked_up": picked_up(),
    "ruins": envelopes.location_update("ruins", {"type": "npc_spawn", "data": {"message": "!"}}),
    "combat5": combat(5),
    "state7": envelopes.personal_message(7, {"type": "state_update", "data": {"hp": 1}}),
    "arrived7": envelopes.location_update(
        "ruins", {"type": "location_update", "data": {"message": "B arrived", "player_id": 7}}
    ),
    "join": joined(),
}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [*FILTER_SAMPLES, "junk"]),
        ({"types": ["combat_update"]}, ["combat5"]),
        ({"types": ["location_update"]}, ["picked_up", "ruins", "arrived7"]),
        ({"types": ["worker_join", "undecodable"]}, ["join", "junk"]),
        ({"locations": ["overpass"]}, ["picked_up"]),
        ({"locations": ["overpass", "ruins"]}, ["picked_up", "ruins", "arrived7"]),
        ({"players": [5]}, ["picked_up", "combat5"]),
        ({"players": ["7"]}, ["state7", "arrived7"]),
        ({"types": ["personal_message"], "players": [7]}, ["state7"]),
        ({"types": ["undecodable"], "players": [7]}, []),
    ],
)
def test_filter_semantics(options, expected):
    wanted = TailFilter.build(**options)
    messages = {
        name: to_message(env.channel, env.to_json()) for name, env in FILTER_SAMPLES.items()
    }
    messages["junk"] = to_message("player:7", "garbage")
    assert [name for name, m in messages.items() if wanted.matches(m)] == expected


@pytest.mark.parametrize(
    "options",
    [{"types": [" "]}, {"locations": ["over pass"]}, {"locations": ["a:b"]}, {"players": [0]}],
)
def test_bad_filter_values_are_usage_errors(options):
    with pytest.raises(TailArgumentError) as info:
        TailFilter.build(**options)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("options", "noise", "wanted"),
    [
        ({"types": ["combat_update"]}, [picked_up(), joined()], combat()),
        ({"location": ["ruins"]}, [picked_up("overpass"), combat()], picked_up("ruins")),
        ({"player": [8]}, [combat(5), picked_up()], combat(8)),
    ],
    ids=["type", "location", "player"],
)
async def test_filters_apply_to_live_traffic(redis_url, sync_r, options, noise, wanted):
    async with Tailer(target_of(redis_url), **options) as t:
        publish(sync_r, *noise, wanted)
        got = await t.message()
    assert got.envelope is not None
    assert got.envelope.to_dict() == wanted.to_dict()


def test_subscription_plan_and_validation():
    assert plan_subscriptions().names == (
        "game:broadcast",
        "game:workers",
        "location:*",
        "player:*",
    )
    assert set(plan_subscriptions().names) == set(DEFAULT_CHANNELS)
    plan = plan_subscriptions(["player:5", "location:over*", "player:5", "npc:[ab]", "x?"])
    assert plan.channels == ("player:5",)
    assert plan.patterns == ("location:over*", "npc:[ab]", "x?")
    assert is_pattern("location:*")
    assert not is_pattern("game:broadcast")
    for bad in ["", "   ", "game: broadcast", "tab\there", "x" * 2000]:
        with pytest.raises(TailArgumentError):
            plan_subscriptions([bad])


async def test_explicit_channels_and_patterns(redis_url, sync_r):
    async with Tailer(target_of(redis_url), ["player:5", "location:over*"]) as t:
        publish(sync_r, combat(6), broadcast(), picked_up("ruins"), joined(), combat(5))
        direct = await t.message()
        publish(sync_r, picked_up("overpass"))
        matched = await t.message()
    assert (direct.channel, direct.pattern, direct.type) == ("player:5", None, "personal_message")
    assert (matched.channel, matched.pattern) == ("location:overpass", "location:over*")


# -- surviving the server -----------------------------------------------------------------


async def test_restart_yields_a_gap_then_messages_flow_again(private_redis: RedisServer):
    private_redis.start()
    lost: list[str] = []
    async with Tailer(target_of(private_redis.url), on_disconnected=lost.append) as t:
        publish(redis.Redis.from_url(private_redis.url), broadcast())
        assert (await t.message()).type == "global_broadcast"

        stopped_at = time.time()
        private_redis.stop()
        await eventually(lambda: bool(lost), timeout=8)  # tail saw the connection go
        # time, not an event, is the property: the server stays away this long, and the
        # gap tail reports covers it
        down = 0.3
        await asyncio.sleep(down)
        private_redis.start()
        gap = await t.next(timeout=8)
        assert isinstance(gap, TailGap), gap
        assert stopped_at <= gap.disconnected_at < gap.reconnected_at <= time.time()
        assert gap.duration >= down
        assert gap.attempts >= 1
        assert "closed the connection" in gap.error
        assert gap.error.endswith(" (the server restarted)")  # the cause, read once back
        assert lost == [gap.error.removesuffix(" (the server restarted)")]
        assert json.loads(json.dumps(gap.as_dict()))["event"] == "gap"

        await t.wait_subscribed(2)
        publish(redis.Redis.from_url(private_redis.url), combat())
        after = await t.message()
        assert after.summary == "to 5: combat_update You dealt 12 damage!"


async def test_a_silent_connection_is_detected_by_ping(private_redis: RedisServer):
    """A frozen server (or a half-open TCP connection) never closes the socket."""
    private_redis.start()
    lost: list[str] = []
    async with Tailer(target_of(private_redis.url, timeout=0.5), on_disconnected=lost.append) as t:
        pid = private_redis.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:  # frozen until tail gives the connection up (its PING unanswered), not a guess
            await eventually(lambda: bool(lost), timeout=8)
        finally:
            os.kill(pid, signal.SIGCONT)
        gap = await t.next(timeout=8)
        assert isinstance(gap, TailGap), gap
        assert "no reply to PING" in gap.error
        await t.wait_subscribed(2)
        publish(redis.Redis.from_url(private_redis.url), joined())
        assert (await t.message()).summary == "worker-3 joined"


async def test_credential_errors_are_not_retried(private_redis: RedisServer):
    private_redis.start()
    async with Tailer(target_of(private_redis.url)) as t:
        private_redis.stop()
        private_redis.password = "n3w-secret"
        private_redis.start()
        with pytest.raises(AuthError) as info:
            await t.next(timeout=8)
    assert info.value.exit_code == ExitCode.AUTH
    assert "n3w-secret" not in str(info.value)


async def test_unreachable_at_start_raises_instead_of_retrying():
    events = tail(target_of(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(UnreachableError) as info:
        await anext(events)
    assert "connection refused" in str(info.value)
