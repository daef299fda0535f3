"""What to subscribe to, and which received messages to keep (the tail's filters)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from echoes_ops.contract import envelopes, keys
from echoes_ops.contract.envelopes import Envelope
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.contract.pubsub import SHARDED, PubSubMode, split_channels
from echoes_ops.errors import InvalidIdError
from echoes_ops.operations.tail.events import (
    _BAD_CHANNEL,
    _GLOB,
    DEFAULT_CHANNELS,
    MAX_CHANNEL_LENGTH,
    UNDECODABLE,
    TailArgumentError,
    TailMessage,
)

# -- subscriptions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriptions:
    channels: tuple[str, ...]
    patterns: tuple[str, ...]
    # shard channels (SSUBSCRIBE): location and player channels in the sharded mode, the
    # named ones and those a pattern expands to (see :func:`shard_plan`)
    shard: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.channels + self.patterns + self.shard

    def describe(self, limit: int = 6) -> str:
        """What is listened to, in one line: classic names, then the shard channels (the
        first ``limit`` of them and how many more)."""
        parts = list(self.channels + self.patterns)
        if self.shard:
            shown = ", ".join(self.shard[:limit])
            more = len(self.shard) - limit
            parts.append(
                f"{len(self.shard)} shard channel(s) ({shown}{f', +{more} more' if more > 0 else ''})"
            )
        return ", ".join(parts)


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


def shard_plan(
    subs: Subscriptions,
    mode: PubSubMode,
    *,
    locations: Iterable[str] = (),
    players: Iterable[int] = (),
) -> Subscriptions:
    """``subs`` as subscribed in ``mode``. Classic: unchanged. Sharded: named location and
    player channels move to ``shard``, and a pattern that matches location or player
    channels adds the shard channels of the known ``locations`` (the gamedata location
    index) and of the ``players`` named by ``--player`` that it matches (shard channels
    have no patterns). The patterns stay subscribed too, so a publisher still in the
    classic mode is heard as well."""
    if mode != SHARDED:
        return subs
    classic, shard = split_channels(subs.channels, mode)
    wanted = list(shard)
    candidates = [keys.location_channel(loc) for loc in sorted(set(locations))]
    candidates += [keys.player_channel(pid) for pid in sorted(set(players))]
    for pattern in subs.patterns:
        wanted += [name for name in candidates if fnmatch.fnmatchcase(name, pattern)]
    return Subscriptions(classic, subs.patterns, tuple(dict.fromkeys(wanted)))


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
