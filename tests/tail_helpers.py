"""Helpers of the ``tail`` tests (test_tail.py, test_tail_cli.py, and the pub/sub tests on
a cluster or in sharded mode): the plan's example envelopes, publishing them, and
:class:`Tailer`, which runs :func:`tail` in a task."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import redis

from echoes_ops.config import RedisTarget, Settings
from echoes_ops.contract import envelopes
from echoes_ops.operations.tail import TailEvent, TailMessage, tail
from tests.waiting import eventually

# the plan's four example envelopes
ANNOUNCEMENT = {
    "type": "server_announcement",
    "data": {"message": "Server maintenance in 5 minutes"},
}
PICKED_UP = {
    "type": "location_update",
    "data": {"message": "Jocaru picked up 3x Iron Ore", "action": "item_picked_up"},
    "timestamp": "2025-11-09T17:52:00Z",
}
COMBAT = {
    "type": "combat_update",
    "data": {"message": "You dealt 12 damage!", "combat_over": False},
}


def broadcast() -> envelopes.Envelope:
    return envelopes.global_broadcast(ANNOUNCEMENT)


def picked_up(location: str = "overpass") -> envelopes.Envelope:
    return envelopes.location_update(location, PICKED_UP, exclude_player_id=5)


def combat(player: int = 5) -> envelopes.Envelope:
    return envelopes.personal_message(player, COMBAT)


def joined() -> envelopes.Envelope:
    return envelopes.worker_event("worker_join", "worker-3")


def publish(client: redis.Redis, *messages: envelopes.Envelope | tuple[str, str | bytes]) -> None:
    for message in messages:
        if isinstance(message, envelopes.Envelope):
            client.publish(message.channel, message.to_json())
        else:
            client.publish(*message)


class Tailer:
    """Runs :func:`tail` in a task; events land in a queue."""

    def __init__(self, target: RedisTarget, channels: Sequence[str] = (), **options: Any):
        self.target = target
        self.channels = channels
        self.options = {"dead_after": 0.7, **options}
        self.queue: asyncio.Queue[TailEvent] = asyncio.Queue()
        self.subscriptions = 0
        self.task: asyncio.Task[None] | None = None

    def _subscribed(self, _: object) -> None:
        self.subscriptions += 1

    async def _consume(self) -> None:
        events = tail(self.target, self.channels, on_subscribed=self._subscribed, **self.options)
        async with contextlib.aclosing(events):
            async for event in events:
                self.queue.put_nowait(event)

    async def __aenter__(self) -> Tailer:
        self.task = asyncio.create_task(self._consume())
        await self.wait_subscribed(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def wait_subscribed(self, times: int, timeout: float = 8.0) -> None:
        task = self.task
        assert task is not None

        def subscribed() -> bool:
            if task.done():
                task.result()  # raises what ended it
                raise AssertionError("tail ended before subscribing")
            return self.subscriptions >= times

        await eventually(subscribed, timeout, f"tail's subscription number {times}")

    async def next(self, timeout: float = 3.0) -> TailEvent:
        assert self.task is not None
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task.done():
            self.task.result()
        raise AssertionError(f"no event within {timeout} s")

    async def message(self, timeout: float = 3.0) -> TailMessage:
        event = await self.next(timeout)
        assert isinstance(event, TailMessage), event
        return event


def target_of(url: str, timeout: float = 1.0) -> RedisTarget:
    return dataclasses.replace(Settings.from_dsn(url).redis_target(), timeout=timeout)
