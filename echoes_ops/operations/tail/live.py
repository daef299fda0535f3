"""The live tail: its own connection, subscriptions, reconnects and gaps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass

from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from echoes_ops.client import dropcause
from echoes_ops.client.connect import AnyRedis, make_client
from echoes_ops.client.errors import translate
from echoes_ops.client.subscribed import check_deadlines
from echoes_ops.client.subscriber import Subscriber
from echoes_ops.config import RedisTarget
from echoes_ops.contract import keys
from echoes_ops.contract.pubsub import SHARDED
from echoes_ops.operations.tail.events import (
    TailArgumentError,
    TailEvent,
    TailGap,
)
from echoes_ops.operations.tail.subscriptions import (
    Subscriptions,
    TailFilter,
    plan_subscriptions,
    shard_plan,
)
from echoes_ops.operations.tail.summary import _text, to_message

# -- the live tail ------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, rx.AuthenticationError):
        return False
    if isinstance(exc, rx.ResponseError):
        return False
    return isinstance(exc, rx.ConnectionError | rx.TimeoutError | TimeoutError | OSError)


@dataclass
class _Session:
    """One subscriber (one connection per node it needs) with its subscriptions confirmed."""

    client: AnyRedis
    subscriber: Subscriber
    subs: Subscriptions

    async def close(self) -> None:
        with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
            await self.subscriber.aclose()
        with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
            await self.client.aclose()


async def _known_locations(client: AnyRedis) -> list[str]:
    """The gamedata location index (what preload wrote), for expanding patterns to shard
    channels; empty when it is missing."""
    raw = await client.smembers(keys.LOCATION_INDEX_KEY)
    found = []
    for item in raw:
        text = _text(item)
        if keys.parse_presence_key(keys.PRESENCE_PREFIX + text + keys.PRESENCE_SUFFIX):
            found.append(text)
    return sorted(found)


async def _open_session(
    target: RedisTarget,
    subs: Subscriptions,
    wanted: TailFilter,
    dead: float,
    ping: float,
    *,
    refresh: bool = False,
) -> _Session:
    """Connect, subscribe (in the target's pub/sub mode: shard channels on every node that
    owns one), and wait until Redis confirms every subscription."""
    client = make_client(
        target,
        decode_responses=False,  # a message that is not UTF-8 must not break the reader
        health_check_interval=0,  # we PING ourselves, and reconnect ourselves
        # no retries inside redis-py: a failed read must surface here, not reconnect and
        # resubscribe silently behind our back
        retry=Retry(NoBackoff(), 0, supported_errors=()),
    )
    subscriber = Subscriber(client, dead_after=dead, ping_after=ping)
    session = _Session(client, subscriber, subs)
    try:
        if refresh:
            await subscriber.refresh_topology()
        if target.pubsub_mode == SHARDED and subs.patterns:
            locations = [*await _known_locations(client), *sorted(wanted.locations)]
        else:
            locations = sorted(wanted.locations)
        session.subs = shard_plan(
            subs, target.pubsub_mode, locations=locations, players=sorted(wanted.players)
        )
        await subscriber.start(
            channels=session.subs.channels,
            patterns=session.subs.patterns,
            shard=session.subs.shard,
            confirm_within=target.timeout,
        )
    except BaseException:
        await session.close()
        raise
    return session


async def tail(
    target: RedisTarget,
    channels: Sequence[str] = (),
    *,
    types: Iterable[str] = (),
    location: Iterable[str] = (),
    player: Iterable[int | str] = (),
    reconnect_delay: float = 0.1,
    max_reconnect_delay: float = 2.0,
    dead_after: float | None = None,
    ping_after: float | None = None,
    on_subscribed: Callable[[Subscriptions], None] | None = None,
    on_disconnected: Callable[[str], None] | None = None,
) -> AsyncGenerator[TailEvent, None]:
    """Yield decoded messages on ``channels`` (default: the four families) until cancelled.

    Names with glob characters are patterns. ``types``/``location``/``player`` filter the
    messages (see :class:`TailFilter`). When the first connection fails, the translated
    :class:`OpsError` is raised; after that a lost connection is retried forever with backoff
    from ``reconnect_delay`` up to ``max_reconnect_delay``, and a :class:`TailGap` is yielded
    once resubscribed. Credential and permission errors are raised, never retried.

    A connection that says nothing for ``dead_after`` seconds (default: the target's
    ``dead_after``, ``ECHOES_OPS_DEAD_AFTER``) counts as lost: it is PINGed after
    ``ping_after`` seconds of silence (default a third of ``dead_after``), so only a stalled
    server or a half-open connection stays silent that long.

    ``on_subscribed`` is called after every successful (re)subscription, ``on_disconnected``
    with the error text as soon as a connection is lost. Close the generator (``aclose``,
    or ``contextlib.aclosing``) to release the connection promptly.
    """
    subs = plan_subscriptions(channels)
    wanted = TailFilter.build(types, location, player)
    where = target.display
    dead = target.dead_after if dead_after is None else dead_after
    ping = dead / 3 if ping_after is None else ping_after
    try:
        check_deadlines(ping, dead)
    except ValueError as exc:
        raise TailArgumentError(str(exc)) from None

    try:
        session = await _open_session(target, subs, wanted, dead, ping)
    except (rx.RedisError, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc
    gap: TailGap | None = None
    server = await dropcause.mark(session.client)

    try:
        while True:
            if on_subscribed is not None:
                on_subscribed(session.subs)
            if gap is not None:
                yield gap
                gap = None
            try:
                while True:
                    reply = await session.subscriber.next()
                    message = to_message(
                        reply["channel"], reply["data"], pattern=reply.get("pattern")
                    )
                    if wanted.matches(message):
                        yield message
            except (rx.RedisError, OSError, TimeoutError) as exc:
                if not _retryable(exc):
                    raise translate(exc, where) from exc
                lost_at = time.time()
                reason = translate(exc, where).message
                await session.close()
                if on_disconnected is not None:
                    on_disconnected(reason)
                session, attempts = await _reconnect(
                    target, subs, wanted, dead, ping, where, reconnect_delay, max_reconnect_delay
                )
                reason = await dropcause.cause(session.client, server, reason)
                server = await dropcause.mark(session.client)
                gap = TailGap(lost_at, time.time(), reason, attempts)
    finally:
        await session.close()


async def _reconnect(
    target: RedisTarget,
    subs: Subscriptions,
    wanted: TailFilter,
    dead: float,
    ping: float,
    where: str,
    delay: float,
    max_delay: float,
) -> tuple[_Session, int]:
    attempts = 0
    wait = max(delay, 0.0)
    while True:
        await asyncio.sleep(wait)
        attempts += 1
        try:
            return await _open_session(target, subs, wanted, dead, ping, refresh=True), attempts
        except (rx.RedisError, OSError, TimeoutError) as exc:
            if not _retryable(exc):
                raise translate(exc, where) from exc
        wait = min(max(wait * 2, 0.05), max_delay)
