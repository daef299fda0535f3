"""The live tail: its own connection, subscriptions, reconnects and gaps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from redis import exceptions as rx
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from echoes_ops.client import dropcause
from echoes_ops.client.connect import Redis, make_client
from echoes_ops.client.errors import translate
from echoes_ops.client.subscribed import SubscribedReader, check_deadlines, close_pubsub
from echoes_ops.config import RedisTarget
from echoes_ops.operations.tail.events import (
    TailArgumentError,
    TailEvent,
    TailGap,
    TailMessage,
)
from echoes_ops.operations.tail.subscriptions import Subscriptions, TailFilter, plan_subscriptions
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
    """One connection with its subscriptions confirmed."""

    client: Redis
    pubsub: PubSub
    early: list[TailMessage] = field(default_factory=list)

    async def close(self) -> None:
        with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
            await close_pubsub(self.pubsub)
        with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
            await self.client.aclose()


async def _open_session(target: RedisTarget, subs: Subscriptions) -> _Session:
    """Connect, subscribe, and wait until Redis confirms every subscription."""
    client = make_client(
        target,
        decode_responses=False,  # a message that is not UTF-8 must not break the reader
        health_check_interval=0,  # we PING ourselves, and reconnect ourselves
        # no retries inside redis-py: a failed read must surface here, not reconnect and
        # resubscribe silently behind our back
        retry=Retry(NoBackoff(), 0, supported_errors=()),
    )
    pubsub = client.pubsub()
    session = _Session(client, pubsub)
    try:
        if subs.channels:
            await pubsub.subscribe(*subs.channels)
        if subs.patterns:
            await pubsub.psubscribe(*subs.patterns)
        pending = len(subs.channels) + len(subs.patterns)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(target.timeout, 0.1)
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise rx.TimeoutError("Redis did not confirm the subscriptions in time")
            reply = await pubsub.get_message(timeout=remaining)
            if reply is None:
                continue
            kind = _text(reply["type"])
            if kind in ("subscribe", "psubscribe"):
                pending -= 1
            elif kind in ("message", "pmessage"):
                session.early.append(
                    to_message(reply["channel"], reply["data"], pattern=reply.get("pattern"))
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
        session = await _open_session(target, subs)
    except (rx.RedisError, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc
    gap: TailGap | None = None
    server = await dropcause.mark(session.client)

    try:
        while True:
            if on_subscribed is not None:
                on_subscribed(subs)
            if gap is not None:
                yield gap
                gap = None
            try:
                for early in session.early:
                    if wanted.matches(early):
                        yield early
                session.early.clear()
                receiver = SubscribedReader(session.pubsub, dead_after=dead, ping_after=ping)
                while True:
                    reply = await receiver.next()
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
                    target, subs, where, reconnect_delay, max_reconnect_delay
                )
                reason = await dropcause.cause(session.client, server, reason)
                server = await dropcause.mark(session.client)
                gap = TailGap(lost_at, time.time(), reason, attempts)
    finally:
        await session.close()


async def _reconnect(
    target: RedisTarget,
    subs: Subscriptions,
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
            return await _open_session(target, subs), attempts
        except (rx.RedisError, OSError, TimeoutError) as exc:
            if not _retryable(exc):
                raise translate(exc, where) from exc
        wait = min(max(wait * 2, 0.05), max_delay)
