"""Reading a subscribed (pub/sub) connection, and knowing when it has died.

A subscribed connection is quiet by design: a stalled server (stopped, paused, swapping) or
a half-open TCP connection (the peer vanished without a FIN or RST: a crashed host, a NAT or
load balancer that forgot the flow) looks exactly like a quiet channel. Nothing fails; reads
just never return anything again. :class:`SubscribedReader` tells the two apart on our own
clock: after ``ping_after`` seconds of silence it sends ``PING <token>`` on the subscribed
connection itself (allowed in subscribed mode), and after ``dead_after`` seconds of silence
it raises :class:`SilentConnectionError`. Whatever the connection hands back counts as
heard: a message, a subscribe confirmation, the reply to our PING.

It relies on nothing but redis-py's public ``PubSub.get_message``/``PubSub.ping``: how a
release shapes the PING reply does not matter (8.1 returned a decoded RESP3 ``PONG`` as a
malformed subscribe-type event, which ``ignore_subscribe_messages`` dropped, so a healthy
idle worker was declared dead every few seconds; 8.2 returns it as a ``pong`` event), and no
release can make a stalled connection look alive, because nothing is read from a stalled
one. So never create the ``PubSub`` with ``ignore_subscribe_messages=True``: this reader
filters, after it has seen the event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis import exceptions as rx
from redis.asyncio.client import PubSub

# event types that carry a published message (the rest are protocol: (un)subscribe, pong)
PUBLISHED = frozenset({"message", "pmessage", "smessage"})


class SilentConnectionError(rx.ConnectionError):
    """Nothing, not even the reply to PING, arrived within ``dead_after``: the server is
    stalled or the connection half-open. Treat it like a dropped connection."""


async def close_pubsub(pubsub: PubSub) -> None:
    """``pubsub.aclose()``, typed: redis-py 8.1 leaves it unannotated, 8.2 annotates it, so
    neither a plain call nor a ``type: ignore`` type-checks on both."""
    close = cast(Callable[[], Awaitable[None]], pubsub.aclose)
    await close()


def check_deadlines(ping_after: float, dead_after: float) -> None:
    """Raise ValueError unless 0 < ping_after < dead_after (the pong needs time to come)."""
    if not 0 < ping_after < dead_after:
        raise ValueError(
            f"ping_after ({ping_after:g} s) must be positive and below dead_after "
            f"({dead_after:g} s)"
        )


class SubscribedReader:
    """Yields the published messages of ``pubsub`` (``get_message`` dicts), raising
    :class:`SilentConnectionError` once the connection has said nothing for ``dead_after``
    seconds. ``ping_after`` defaults to a third of ``dead_after``, so a slow pong has two
    thirds of the budget to arrive. Redis and socket errors propagate as they are.
    """

    def __init__(
        self,
        pubsub: PubSub,
        *,
        dead_after: float,
        ping_after: float | None = None,
        on_protocol: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.pubsub = pubsub
        # called with every reply that is not a published message ((un)subscribe
        # confirmations, pongs, a server-sent sunsubscribe); may raise to end the read
        self.on_protocol = on_protocol
        self.dead_after = dead_after
        self.ping_after = dead_after / 3 if ping_after is None else ping_after
        check_deadlines(self.ping_after, self.dead_after)
        self._loop = asyncio.get_running_loop()
        self.last_heard = self._loop.time()
        self.ping_sent: float | None = None
        self.pings = 0  # PINGs sent on this connection (tests and diagnostics)
        self._token = f"echoes-ops-{os.getpid()}-{id(self):x}"

    def heard(self) -> None:
        """Count something received outside :meth:`next` (e.g. a subscribe confirmation read
        while subscribing) as a sign of life."""
        self.last_heard = self._loop.time()
        self.ping_sent = None

    async def next(self) -> dict[str, Any]:
        """The next published message (``type`` in :data:`PUBLISHED`)."""
        while True:
            now = self._loop.time()
            silent = now - self.last_heard
            if silent >= self.dead_after:
                raise SilentConnectionError(
                    f"no reply to PING: nothing heard for {silent:.1f} s "
                    f"(limit {self.dead_after:g} s); the server is stalled or the "
                    "connection half-open"
                )
            if self.ping_sent is None and silent >= self.ping_after:
                await self._ping(self.dead_after - silent)
                self.ping_sent = now
            wake = self.last_heard + (
                self.dead_after if self.ping_sent is not None else self.ping_after
            )
            reply = await self.pubsub.get_message(timeout=max(wake - now, 0.005))
            if reply is None:
                continue
            self.heard()
            kind = reply.get("type")
            if isinstance(kind, bytes):
                kind = kind.decode("ascii", "replace")
            if kind in PUBLISHED:
                return cast(dict[str, Any], reply)
            if self.on_protocol is not None:
                self.on_protocol(cast(dict[str, Any], reply))

    async def _ping(self, budget: float) -> None:
        # sending cannot block on a stalled peer until the socket's send buffer is full, but
        # then it would: bounded by the time left, like everything else here
        try:
            async with asyncio.timeout(max(budget, 0.005)):
                await self.pubsub.ping(self._token)
        except TimeoutError:
            raise SilentConnectionError(
                f"PING could not even be sent within {self.dead_after:g} s; the server is "
                "stalled or the connection half-open"
            ) from None
        self.pings += 1
