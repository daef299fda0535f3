"""A live, decoded view of the tier's pub/sub traffic.

:func:`tail` subscribes to channels (SUBSCRIBE) and patterns (PSUBSCRIBE), decodes every
message under the contract and yields :class:`TailMessage` events with a one-line summary.
It owns its connection, because it must outlive Redis restarts: when the connection drops
(or goes silent: an idle connection is PINGed and declared dead when no reply comes) it
reconnects with capped backoff, resubscribes, and yields a :class:`TailGap`. Pub/sub is
at-most-once: whatever was published while we were away is lost, and the gap says so.

Credentials and ACL failures are not retried: they raise the translated :class:`OpsError`.
Nothing here prints; the CLI and the dashboard render the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as rx
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from echoes_ops.client import dropcause
from echoes_ops.client.connect import Redis, make_client
from echoes_ops.client.errors import translate
from echoes_ops.client.subscribed import SubscribedReader, check_deadlines, close_pubsub
from echoes_ops.config import RedisTarget
from echoes_ops.contract import envelopes, keys
from echoes_ops.contract.envelopes import Envelope, decode_message
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import DecodeError, ExitCode, InvalidIdError, OpsError

# The four channel families the game publishes on.
DEFAULT_CHANNELS: tuple[str, ...] = (
    keys.BROADCAST_CHANNEL,
    keys.LOCATION_CHANNEL_PATTERN,
    keys.PLAYER_CHANNEL_PATTERN,
    keys.WORKERS_CHANNEL,
)
UNDECODABLE = "undecodable"
SUMMARY_MAX = 200
MAX_CHANNEL_LENGTH = 1024
_GLOB = re.compile(r"[*?\[]")
_BAD_CHANNEL = re.compile(r"[\s\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


class TailArgumentError(OpsError):
    """A channel, pattern or filter value the operator got wrong."""

    exit_code = ExitCode.USAGE


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailMessage:
    """One received message. ``envelope`` is None when it did not decode (then ``raw``
    holds its text and ``error`` why)."""

    received_at: float
    channel: str
    pattern: str | None
    envelope: Envelope | None
    summary: str
    raw: str | None = None
    error: str | None = None
    latency: float | None = None  # seconds from the envelope's sent_at to receipt

    @property
    def type(self) -> str:
        return self.envelope.type if self.envelope is not None else UNDECODABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "message",
            "received_at": self.received_at,
            "channel": self.channel,
            "pattern": self.pattern,
            "type": self.type,
            "summary": self.summary,
            "latency_ms": round(self.latency * 1000, 3) if self.latency is not None else None,
            "message": self.envelope.to_dict() if self.envelope is not None else None,
            "raw": self.raw,
            "error": self.error,
        }


@dataclass(frozen=True)
class TailGap:
    """The connection was lost and is back: messages published in between are gone."""

    disconnected_at: float
    reconnected_at: float
    error: str
    attempts: int = 1  # connection attempts it took, the successful one included

    @property
    def duration(self) -> float:
        return max(0.0, self.reconnected_at - self.disconnected_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "gap",
            "disconnected_at": self.disconnected_at,
            "reconnected_at": self.reconnected_at,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "attempts": self.attempts,
        }


TailEvent = TailMessage | TailGap


# -- subscriptions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriptions:
    channels: tuple[str, ...]
    patterns: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.channels + self.patterns


def is_pattern(name: str) -> bool:
    """Whether Redis would treat ``name`` as a glob (then it is PSUBSCRIBEd)."""
    return _GLOB.search(name) is not None


def plan_subscriptions(names: Iterable[str] = ()) -> Subscriptions:
    """Split channel arguments into channels and patterns; none given means the four
    families. Raise :class:`TailArgumentError` for empty or white-space names."""
    given = list(names) or list(DEFAULT_CHANNELS)
    channels: list[str] = []
    patterns: list[str] = []
    for name in given:
        if not isinstance(name, str) or not name.strip():
            raise TailArgumentError("a channel or pattern must not be empty")
        if _BAD_CHANNEL.search(name):
            raise TailArgumentError(f"channel {name!r} contains white space or a control character")
        if len(name) > MAX_CHANNEL_LENGTH:
            raise TailArgumentError(f"channel is longer than {MAX_CHANNEL_LENGTH} characters")
        bucket = patterns if is_pattern(name) else channels
        if name not in bucket:
            bucket.append(name)
    return Subscriptions(tuple(channels), tuple(patterns))


# -- filtering ----------------------------------------------------------------------------


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def known_types() -> list[str]:
    """Every message type ``--type`` knows: envelope and payload types, and undecodable."""
    return sorted(envelopes.ENVELOPE_TYPES | envelopes.KNOWN_PAYLOAD_TYPES | {UNDECODABLE})


@dataclass(frozen=True)
class TailFilter:
    """Which messages to show. Values of one option are alternatives (any may match);
    different options must all match. An empty filter shows everything.

    * ``types``: the envelope's type (``location_update``...), the payload's inner type
      (``combat_update``...), or ``undecodable``.
    * ``locations``: location updates for (or published on the channel of) the location.
    * ``players``: messages to, from or about the player: personal messages to them,
      location updates that exclude them (the acting player), payloads naming them.
    """

    types: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    players: frozenset[int] = frozenset()

    @classmethod
    def build(
        cls,
        types: Iterable[str] = (),
        locations: Iterable[str] = (),
        players: Iterable[int | str] = (),
    ) -> TailFilter:
        """Validate the values (ids as the contract allows them)."""
        type_set: set[str] = set()
        for kind in types:
            if not isinstance(kind, str) or not kind.strip():
                raise TailArgumentError("--type must not be empty")
            type_set.add(kind.strip())
        try:
            location_set = {check_name(loc, "location id") for loc in locations}
            player_set = {check_character_id(pid) for pid in players}
        except InvalidIdError as exc:
            raise TailArgumentError(str(exc)) from None
        return cls(frozenset(type_set), frozenset(location_set), frozenset(player_set))

    @property
    def empty(self) -> bool:
        return not (self.types or self.locations or self.players)

    def describe(self) -> str:
        """The filters as applied, in words: ``type combat_update; player 5 or 7``."""
        if self.empty:
            return "none: every message is shown"
        parts = []
        for label, values in (
            ("type", sorted(self.types)),
            ("location", sorted(self.locations)),
            ("player", [str(p) for p in sorted(self.players)]),
        ):
            if values:
                parts.append(f"{label} {' or '.join(values)}")
        return "; ".join(parts)

    def unknown_types(self) -> list[str]:
        """``--type`` values that are no known envelope or payload type (nor undecodable):
        probably a typo, as they may never match."""
        return sorted(self.types - set(known_types()))

    def matches(self, message: TailMessage) -> bool:
        if self.empty:
            return True
        env = message.envelope
        if env is None:
            # nothing to match a location or player against
            return UNDECODABLE in self.types and not (self.locations or self.players)
        if self.types and not self._type_matches(env):
            return False
        if self.locations and not self._location_matches(env, message.channel):
            return False
        return not self.players or self._player_matches(env, message.channel)

    def _type_matches(self, env: Envelope) -> bool:
        inner = env.payload.get("type")
        return env.type in self.types or (isinstance(inner, str) and inner in self.types)

    def _location_matches(self, env: Envelope, channel: str) -> bool:
        if env.location_id in self.locations:
            return True
        return any(channel == keys.location_channel(loc) for loc in self.locations)

    def _player_matches(self, env: Envelope, channel: str) -> bool:
        data = env.payload.get("data")
        candidates: list[object] = [
            env.player_id,
            env.exclude_player_id,
            env.payload.get("player_id"),
            data.get("player_id") if isinstance(data, Mapping) else None,
        ]
        if any(_as_int(c) in self.players for c in candidates if c is not None):
            return True
        return any(channel == keys.player_channel(pid) for pid in self.players)


# -- summaries ----------------------------------------------------------------------------


def _one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _compact(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


def _payload_text(payload: Mapping[str, Any]) -> str:
    """The human part of a payload: its message, else its data, else the rest of it."""
    data = payload.get("data")
    if isinstance(data, Mapping):
        message = data.get("message")
        if isinstance(message, str) and message.strip():
            return message
    message = payload.get("message")
    if isinstance(message, str) and message.strip():
        return message
    if isinstance(data, str):
        return data
    if data:
        return _compact(data)
    rest = {k: v for k, v in payload.items() if k not in ("type", "timestamp")}
    return _compact(rest) if rest else ""


def _joined(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def summarize(envelope: Envelope) -> str:
    """A one-line description of a decoded message, computed from the envelope alone."""
    payload = envelope.payload
    inner = payload.get("type") if isinstance(payload.get("type"), str) else None
    text = _payload_text(payload)
    kind = envelope.type
    if kind == envelopes.GLOBAL_BROADCAST:
        label = "announcement" if inner in (None, "server_announcement") else str(inner)
        line = f"{label}: {text}" if text else label
    elif kind == envelopes.LOCATION_UPDATE:
        where = envelope.location_id or envelope.channel
        what = text if inner in (None, envelopes.LOCATION_UPDATE) else _joined(str(inner), text)
        line = f"{where}: {what}"
        if envelope.exclude_player_id is not None:
            line += f" (exclude {envelope.exclude_player_id})"
    elif kind == envelopes.PERSONAL_MESSAGE:
        who = envelope.player_id if envelope.player_id is not None else "?"
        line = f"to {who}: {_joined(inner or '', text)}"
    elif kind in (envelopes.WORKER_JOIN, envelopes.WORKER_LEAVE):
        verb = "joined" if kind == envelopes.WORKER_JOIN else "left"
        line = f"{envelope.worker_id or '?'} {verb}"
        details = _extra_text(envelope)
        if details:
            line += f" ({details})"
    elif kind == envelopes.CONFIG_CHANGED:
        line = _joined("config changed", _extra_text(envelope) or text)
        if envelope.worker_id:
            line += f" (by {envelope.worker_id})"
    else:
        line = _joined(inner or "", text or _extra_text(envelope))
    return _one_line(line)


def _extra_text(envelope: Envelope) -> str:
    pairs = [f"{k}={v if isinstance(v, str) else _compact(v)}" for k, v in envelope.extra.items()]
    if envelope.type in envelopes.WORKER_EVENTS and envelope.payload:
        pairs.append(_compact(dict(envelope.payload)))
    return " ".join(pairs)


def summarize_undecodable(raw: str, error: str, channel: str = "") -> str:
    """``not JSON: <the start of the text>`` and the like."""
    reason = error
    for prefix in (f"message on {channel}:", f"message on {channel} "):
        if channel and reason.startswith(prefix):
            reason = reason[len(prefix) :].strip()
            break
    reason = reason.removeprefix("is ")
    preview = raw if len(raw) <= 80 else raw[:79] + "…"
    return _one_line(f"{reason}: {preview}" if preview.strip() else f"{reason} (empty)")


def to_message(
    channel: str | bytes,
    data: str | bytes,
    *,
    pattern: str | bytes | None = None,
    received_at: float | None = None,
) -> TailMessage:
    """Decode one pub/sub message into a :class:`TailMessage`; never raises for bad data."""
    now = time.time() if received_at is None else received_at
    name = _text(channel)
    pattern_name = _text(pattern) if pattern is not None else None
    try:
        env = decode_message(name, data)
    except DecodeError as exc:
        raw = _text(data)
        return TailMessage(
            received_at=now,
            channel=name,
            pattern=pattern_name,
            envelope=None,
            summary=summarize_undecodable(raw, str(exc), name),
            raw=raw,
            error=str(exc),
        )
    latency = now - env.sent_at if env.sent_at is not None else None
    return TailMessage(
        received_at=now,
        channel=name,
        pattern=pattern_name,
        envelope=env,
        summary=summarize(env),
        latency=latency,
    )


def _text(value: str | bytes | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


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
