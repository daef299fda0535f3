"""Commands in steps (client.bulk): the next step is written only once the previous step's
replies are in, on one server and on each node of a cluster."""

from __future__ import annotations

from typing import Any

import hiredis
import pytest

from echoes_ops.client.bulk import StepConnection, bulk, reloading
from echoes_ops.client.connect import open_redis


def _events() -> tuple[list[Any], Any, Any]:
    events: list[Any] = []

    def stop() -> bool:
        events.append("send")
        return False

    def progress(done: int, total: int) -> None:
        events.append(done)

    return events, stop, progress


@pytest.mark.parametrize("stepped", [True, False], ids=["stepped", "pipelined"])
async def test_a_step_is_written_after_the_previous_replies(r, stepped):
    commands = [("SET", f"k{i}", str(i)) for i in range(5)] + [("INCR", "k0")]
    events, stop, progress = _events()
    replies = await bulk(r, commands, chunk=2, stepped=stepped, stop=stop, progress=progress)
    assert replies == ["OK"] * 5 + [1]
    if stepped:
        assert events == ["send", 2, "send", 4, "send", 6]
    else:  # one chunk written ahead of the replies read
        assert events == ["send", "send", 2, "send", 4, 6]


async def test_steps_on_every_node_of_a_cluster(tier_settings):
    async with open_redis(tier_settings.redis_target()) as client:
        keys = [f"player:{i}:session" for i in range(60)]
        commands = [("HSET", key, "hp", "1") for key in keys]
        replies = await bulk(client, commands, chunk=4, stepped=True)
        assert replies == [1] * 60
        assert await bulk(client, [("HGET", key, "hp") for key in keys], stepped=True) == ["1"] * 60


async def test_step_connection_returns_error_replies_in_place(r):
    async with StepConnection(r) as line:
        replies = await line.calls([("SET", "a", "1"), ("INCR", "a", "x"), ("GET", "a")])
    assert replies[0] == "OK"
    assert "wrong number of arguments" in str(replies[1])
    assert replies[2] == "1"
    assert await r.get("a") == "1"  # the connection went back to the pool in a good state


async def test_calls_refused_with_noscript_are_resent_after_a_reload(r):
    script = "return redis.call('INCR', KEYS[1])"
    sha = await r.script_load(script)
    calls = [hiredis.pack_command(("EVALSHA", sha, 1, f"n{i}")) for i in range(3)]
    rounds: list[int] = []
    async with StepConnection(r) as line:

        async def send(part: Any) -> list[Any]:
            rounds.append(len(part))
            if len(rounds) == 1:
                await r.script_flush()  # the server lost its scripts before the first round
            return await line.packed(part)

        assert await reloading(r, [script], send, calls) == [1, 1, 1]
    assert rounds == [3, 3]  # every call refused, then each sent once more
    assert [await r.get(f"n{i}") for i in range(3)] == ["1", "1", "1"]  # each ran once
