"""Pub/sub modes: which channels are published and subscribed classically, which sharded.

``classic`` is the plan's: every channel with PUBLISH/SUBSCRIBE. On Redis Cluster a classic
message is forwarded to every node over the cluster bus, so location traffic costs every
node. ``sharded`` sends the per-location and per-player channels (``location:<id>``,
``player:<id>``) with SPUBLISH/SSUBSCRIBE (Redis 7.0+): a message stays on the node that owns
its channel's slot. ``game:broadcast`` and ``game:workers`` stay classic in both modes (every
worker hears them, wherever it is connected). Channel names do not change; a publisher and
its subscribers must agree on the mode, or they do not hear each other (``doctor`` checks).

Pure: no I/O. The mode comes from the settings (``REDIS_PUBSUB_MODE``); workers advertise
theirs in ``worker:<wid>:meta`` (field :data:`META_FIELD`).
"""

from __future__ import annotations

from typing import Final

from echoes_ops.config import PUBSUB_MODES, PubSubMode, check_pubsub_mode
from echoes_ops.contract import keys
from echoes_ops.errors import InvalidIdError

__all__ = [
    "CLASSIC",
    "DEFAULT_MODE",
    "META_FIELD",
    "MODES",
    "SHARDED",
    "PubSubMode",
    "check_mode",
    "is_sharded",
    "publish_command",
    "shardable",
    "split_channels",
    "worker_mode",
]

CLASSIC: Final = "classic"
SHARDED: Final = "sharded"
MODES: Final = PUBSUB_MODES
DEFAULT_MODE: Final[PubSubMode] = "classic"
# the worker meta field that says which mode a worker publishes and subscribes in
META_FIELD: Final = "pubsub_mode"
check_mode = check_pubsub_mode


def shardable(channel: str) -> bool:
    """Whether ``channel`` is a per-location or per-player channel (exact name, no glob):
    the channels the sharded mode sends with SPUBLISH."""
    if channel in (keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL):
        return False
    family, sep, rest = channel.partition(":")
    if not sep or not rest or ":" in rest:
        return False
    try:
        if family == "location":
            return keys.location_channel(rest) == channel
        if family == "player":
            return rest.isascii() and rest.isdigit() and keys.player_channel(rest) == channel
    except InvalidIdError:
        return False
    return False


def is_sharded(channel: str, mode: PubSubMode) -> bool:
    """Whether ``channel`` is published with SPUBLISH (and subscribed with SSUBSCRIBE) in
    ``mode``."""
    return mode == SHARDED and shardable(channel)


def publish_command(channel: str, mode: PubSubMode) -> str:
    """``SPUBLISH`` or ``PUBLISH`` for ``channel`` in ``mode``."""
    return "SPUBLISH" if is_sharded(channel, mode) else "PUBLISH"


def split_channels(
    channels: list[str] | tuple[str, ...], mode: PubSubMode
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(classic, sharded)``: the channels to SUBSCRIBE and those to SSUBSCRIBE in ``mode``
    (order kept, duplicates dropped)."""
    classic: list[str] = []
    sharded: list[str] = []
    for channel in channels:
        bucket = sharded if is_sharded(channel, mode) else classic
        if channel not in bucket:
            bucket.append(channel)
    return tuple(classic), tuple(sharded)


def worker_mode(meta: dict[str, str]) -> PubSubMode | None:
    """The mode a worker advertises in its meta; ``classic`` for a worker that predates the
    field (it can only publish classically); None for a value we do not know."""
    raw = meta.get(META_FIELD)
    if raw is None:
        return DEFAULT_MODE
    text = raw.strip().lower()
    return text if text in MODES else None
