"""Operator broadcasts: a global announcement, a location update, a personal message.

Each is exactly the plan's envelope (``contract/envelopes.py``) with a timestamp, checked
before anything is published: the message (length, control characters), the location
(against the static cache ``location:<id>:cache``), the personal message's ``--data``. A
dry run builds the same envelope and counts who would receive it; a countdown announces a
global message at fixed steps and can be interrupted between them.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import primary_nodes, replica_nodes
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import envelopes, keys
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode, is_sharded
from echoes_ops.errors import ConfigError, DecodeError, ExitCode, OpsError
from echoes_ops.operations.reach import Reach, reach
from echoes_ops.primitives.publish import publish

MAX_MESSAGE_CHARS = 500
MAX_DATA_BYTES = 4096
MAX_COUNTDOWN_STEPS = 200
ANNOUNCEMENT_TYPE = "server_announcement"
DEFAULT_PERSONAL_TYPE = "system_message"
DEFAULT_LOCATION_ACTION = "announcement"

_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# bidirectional overrides and isolates: they make a message display differently from
# what was typed (the "trojan source" trick)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


class BroadcastArgumentError(OpsError):
    """A message, location, type or ``--data`` the operator got wrong; nothing published."""

    exit_code = ExitCode.USAGE


class StaticCacheEmptyError(ConfigError):
    """No location is in the static cache, so a location cannot be checked."""


# -- checks -------------------------------------------------------------------------------


def _bad_character(text: str) -> tuple[int, str] | None:
    for index, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI:
            return index, ch
    return None


def check_text(text: str, what: str = "message", *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message players will see: not blank, at most ``limit`` characters, no control
    characters (new lines and tabs included), no bidirectional overrides."""
    if not text.strip():
        raise BroadcastArgumentError(f"{what} is empty")
    if len(text) > limit:
        raise BroadcastArgumentError(f"{what} is {len(text)} characters long; the limit is {limit}")
    bad = _bad_character(text)
    if bad is not None:
        index, ch = bad
        raise BroadcastArgumentError(
            f"{what} contains the control character U+{ord(ch):04X} at position {index + 1}; "
            "control characters, line breaks and bidirectional overrides are refused"
        )
    return text


def check_word(value: str, what: str) -> str:
    """A ``type`` or ``action`` value: a letter, then letters, digits, ``_ . -`` (64 max)."""
    if not _WORD.match(value):
        raise BroadcastArgumentError(
            f"{what} {value!r} is not a plain word (a letter, then letters, digits, _ . -; "
            "at most 64 characters)"
        )
    return value


def parse_data(text: str | None) -> dict[str, Any]:
    """``--data``: a JSON object, whose strings follow the message rules, without a
    ``message`` key (the message is the command's argument)."""
    if text is None:
        return {}
    if len(text.encode("utf-8")) > MAX_DATA_BYTES:
        raise BroadcastArgumentError(f"--data is larger than {MAX_DATA_BYTES} bytes")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BroadcastArgumentError(
            f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise BroadcastArgumentError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BroadcastArgumentError(
            f"--data must be a JSON object ({{...}}), got a JSON {_json_kind(value)}"
        )
    if "message" in value:
        raise BroadcastArgumentError(
            "--data may not contain 'message': the message is the MESSAGE argument"
        )
    _check_strings(value, "--data")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _check_strings(value: Any, where: str) -> None:
    if isinstance(value, str):
        if _bad_character(value) is not None:
            check_text(value, f"a string in {where}", limit=MAX_DATA_BYTES)
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_strings(name, where)
            _check_strings(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, where)


async def check_location(r: AnyRedis, location_id: str) -> str:
    """The location must be in the static cache; refuses an unknown one (with the closest
    known ids) and says so when the static cache holds no location at all."""
    loc = check_name(location_id, "location id")
    if await r.exists(keys.location_cache_key(loc)):
        return loc
    known: set[str] = set()
    async for batch in scan_keys(r, keys.LOCATION_CACHE_PATTERN):
        known.update(found for found in map(keys.parse_location_cache_key, batch) if found)
    if not known:
        raise StaticCacheEmptyError(
            f"cannot check location {loc!r}: the static cache is empty "
            "(no location:*:cache key in Redis)",
            hint="run: echoes-ops preload",
        )
    close = difflib.get_close_matches(loc, sorted(known), n=3)
    raise BroadcastArgumentError(
        f"unknown location {loc!r}: not in the static cache ({len(known)} locations loaded)"
        + (f"; did you mean {', '.join(close)}?" if close else "")
    )


# -- envelopes ----------------------------------------------------------------------------


def global_envelope(message: str) -> envelopes.Envelope:
    """The plan's ``global_broadcast``: payload ``{"type": "server_announcement", "data":
    {"message": ...}}``, plus a top-level ISO ``timestamp``."""
    payload = {"type": ANNOUNCEMENT_TYPE, "data": {"message": check_text(message)}}
    envelope = envelopes.global_broadcast(payload, msg_id=envelopes.new_msg_id())
    return replace(envelope, timestamp=envelopes.iso_now())


def location_envelope(
    location_id: str,
    message: str,
    *,
    action: str = DEFAULT_LOCATION_ACTION,
    exclude_player_id: int | None = None,
) -> envelopes.Envelope:
    """The plan's ``location_update``: payload ``{"type": "location_update", "data":
    {"message", "action"}, "timestamp": iso}`` (the timestamp where the plan's own
    publishers put it)."""
    stamp = envelopes.iso_now()
    payload = {
        "type": "location_update",
        "data": {"message": check_text(message), "action": check_word(action, "action")},
        "timestamp": stamp,
    }
    envelope = envelopes.location_update(
        check_name(location_id, "location id"),
        payload,
        exclude_player_id=exclude_player_id,
        msg_id=envelopes.new_msg_id(),
    )
    return replace(envelope, timestamp=stamp)


def personal_envelope(
    player_id: int,
    message: str,
    *,
    type_: str = DEFAULT_PERSONAL_TYPE,
    data: Mapping[str, Any] | None = None,
) -> envelopes.Envelope:
    """The plan's ``personal_message``: payload ``{"type": T, "data": {"message", **data}}``,
    plus a top-level ISO ``timestamp``."""
    payload = {
        "type": check_word(type_, "type"),
        "data": {"message": check_text(message), **(data or {})},
    }
    envelope = envelopes.personal_message(
        check_character_id(player_id), payload, msg_id=envelopes.new_msg_id()
    )
    return replace(envelope, timestamp=envelopes.iso_now())


def encode(envelope: envelopes.Envelope) -> str:
    """The exact text to publish (refuses one over ``MAX_MESSAGE_BYTES``)."""
    try:
        return envelope.to_json()
    except DecodeError as exc:
        raise BroadcastArgumentError(str(exc)) from None


# -- publishing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Who is listening on a channel. ``channel_subscribers`` is exact (PUBSUB NUMSUB);
    ``patterns`` is PUBSUB NUMPAT: the distinct patterns subscribed on the whole server,
    whether or not they match this channel, each possibly held by several clients."""

    channel_subscribers: int
    patterns: int
    sharded: bool = False  # a shard channel (SPUBLISH): counted by PUBSUB SHARDNUMSUB

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel_subscribers": self.channel_subscribers,
            "patterns": self.patterns,
            "sharded": self.sharded,
        }


@dataclass
class BroadcastResult:
    kind: str  # global, location, player
    channel: str
    envelope: dict[str, Any]
    text: str
    dry_run: bool
    audience: Audience
    receivers: int | None = None  # PUBLISH's reply: clients that received it
    reach: Reach | None = None  # the players it is for and their connections

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channel": self.channel,
            "dry_run": self.dry_run,
            "envelope": self.envelope,
            "audience": self.audience.as_dict(),
            "receivers": self.receivers,
            "reach": None if self.reach is None else self.reach.as_dict(),
        }


async def audience(r: AnyRedis, channel: str, mode: PubSubMode = DEFAULT_MODE) -> Audience:
    """Who listens on ``channel`` in ``mode``: a shard channel's subscribers are counted by
    PUBSUB SHARDNUMSUB, and no pattern can match it. PUBSUB counts the clients of the node
    it runs on, so on a cluster it runs on every node (primaries and replicas: a client may
    subscribe on any) and the counts are summed; ``patterns`` is then the sum of each
    node's distinct patterns."""
    sharded = is_sharded(channel, mode)
    if isinstance(r, RedisCluster):
        nodes = [n.client for n in [*await primary_nodes(r), *await replica_nodes(r)]]
    else:
        nodes = [r]
    counts = await asyncio.gather(*(_node_audience(node, channel, sharded) for node in nodes))
    return Audience(sum(c for c, _ in counts), sum(p for _, p in counts), sharded=sharded)


async def _node_audience(r: Redis, channel: str, sharded: bool) -> tuple[int, int]:
    if sharded:
        reply = await r.pubsub_shardnumsub(channel)
        return _numsub_count(reply, channel), 0
    pipe = r.pipeline(transaction=False)
    pipe.pubsub_numsub(channel)
    pipe.pubsub_numpat()
    numsub, numpat = await pipe.execute()
    return _numsub_count(numsub, channel), int(numpat)


def _numsub_count(reply: Any, channel: str) -> int:
    """The count for ``channel`` in a NUMSUB-style reply (a flat list or pairs)."""
    if isinstance(reply, dict):
        return int(reply.get(channel, 0))
    items = list(reply or [])
    if items and isinstance(items[0], list | tuple):
        items = [x for pair in items for x in pair]
    for name, count in zip(items[0::2], items[1::2], strict=False):
        shown = name.decode() if isinstance(name, bytes) else str(name)
        if shown == channel:
            return int(count)
    return 0


async def send(
    r: AnyRedis,
    kind: str,
    envelope: envelopes.Envelope,
    *,
    dry_run: bool = False,
    mode: PubSubMode = DEFAULT_MODE,
    count_reach: bool = True,
) -> BroadcastResult:
    """Publish ``envelope`` in ``mode`` (SPUBLISH for a location or player channel when
    sharded), or, with ``dry_run``, only count its audience. The players it reaches are
    counted after it is published (a global count walks the keyspace: the message is not
    held back by it), and not at all without ``count_reach``."""
    text = encode(envelope)
    heard = await audience(r, envelope.channel, mode)
    result = BroadcastResult(kind, envelope.channel, envelope.to_dict(), text, dry_run, heard)
    if not dry_run:
        result.receivers = await publish(r, envelope.channel, text, mode)
    if count_reach:
        result.reach = await reach(r, envelope)
    return result


# -- countdown ----------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h``, ``1h30m``, ``2.5s`` or bare seconds (``45``)."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise BroadcastArgumentError(
                f"cannot read duration {text!r}: use e.g. 90s, 5m, 1h, 1h30m"
            ) from None
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise BroadcastArgumentError(f"duration {text!r} must be more than zero")
    return seconds


def say_duration(seconds: float) -> str:
    """``5 minutes``, ``1 minute 30 seconds``, ``1 hour``, ``0.5 seconds``."""
    if seconds < 1 or seconds != int(seconds):
        if seconds < 60:
            value = f"{seconds:g}"
            return f"{value} second{'' if value == '1' else 's'}"
        seconds = round(seconds)
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    for amount, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if amount:
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return " ".join(parts)


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start
    remaining: float  # seconds left at this step; 0 for the final message
    message: str


def countdown_steps(message: str, within: float, every: float | None) -> list[Step]:
    """``MESSAGE in 5 minutes`` at the start, one step every ``every`` seconds, and
    ``MESSAGE`` itself when ``within`` has passed."""
    check_text(message)
    step = every if every is not None else within
    if step <= 0 or step > within:
        raise BroadcastArgumentError("--every must be more than zero and at most --in")
    count = math.ceil(within / step - 1e-9) + 1
    if count > MAX_COUNTDOWN_STEPS:
        raise BroadcastArgumentError(
            f"that countdown makes {count} announcements; the limit is {MAX_COUNTDOWN_STEPS} "
            "(use a longer --every)"
        )
    steps = []
    at = 0.0
    while within - at > 1e-9:
        remaining = within - at
        steps.append(Step(at, remaining, f"{message} in {say_duration(remaining)}"))
        at = round(at + step, 6)
    steps.append(Step(within, 0.0, message))
    for s in steps:
        check_text(s.message, "countdown message")
    return steps


@dataclass
class CountdownResult:
    steps: list[Step]
    sent: list[BroadcastResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": len(self.steps),
            "sent": [
                {"message": s.envelope["payload"]["data"]["message"], "receivers": s.receivers}
                for s in self.sent
            ],
            "complete": len(self.sent) == len(self.steps),
        }


async def countdown(
    r: AnyRedis,
    steps: list[Step],
    *,
    on_step: Callable[[Step, BroadcastResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CountdownResult:
    """Publish each step's global announcement at its time. Cancelling (Ctrl-C) stops
    between steps; ``result.sent`` holds what went out, for the audit record. The players
    reached are counted once, after the first step (a keyspace walk per step would load the
    tier every few seconds and could make the next step late)."""
    result = CountdownResult(steps)
    start = clock()
    for index, step in enumerate(steps):
        delay = start + step.at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = await send(r, "global", global_envelope(step.message), count_reach=index == 0)
        result.sent.append(sent)
        if on_step is not None:
            on_step(step, sent)
    return result
