"""Every key name, channel name and TTL of the tier, in one place.

Key shapes follow docs/design.md (the plan's keys written without braces, since braces are hash
tags in Redis Cluster). Nothing else in echoes-ops builds a key or channel with an f-string.
Builders validate their ids; parsers return ``None`` for keys that are not of their family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import InvalidIdError

# -- TTLs (seconds) ---------------------------------------------------------------------
SESSION_TTL: Final = 1800
INVENTORY_TTL: Final = 600
WORKER_META_TTL: Final = 15
WORKER_HEARTBEAT_INTERVAL: Final = 5

# -- game keys (the plan's) -------------------------------------------------------------
SESSION_PATTERN: Final = "player:*:session"
INVENTORY_PATTERN: Final = "player:*:inventory"
PRESENCE_PATTERN: Final = "location:*:players"
LOCATION_CACHE_PATTERN: Final = "location:*:cache"
ITEM_DEF_PATTERN: Final = "item:*:def"
NPC_DEF_PATTERN: Final = "npc:*:def"
# the three static families at once (location:*:cache, item:*:def, npc:*:def, and a few
# look-alikes that their parse_* functions drop): one keyspace walk instead of three
STATIC_CACHE_PATTERN: Final = "[iln]*:[cd][ae][cf]*"
WORKER_CONNECTIONS_PATTERN: Final = "worker:*:connections"
WORKER_META_PATTERN: Final = "worker:*:meta"
LOCK_PATTERN: Final = "lock:*"


def session_key(character_id: object) -> str:
    return f"player:{check_character_id(character_id)}:session"


def inventory_key(character_id: object) -> str:
    return f"player:{check_character_id(character_id)}:inventory"


# The same two names as %-formats, for bulk writers that have already checked the id (an
# int from check_character_id): ``SESSION_KEY_FORMAT % 5`` is ``player:5:session``.
SESSION_KEY_FORMAT: Final = "player:%d:session"
INVENTORY_KEY_FORMAT: Final = "player:%d:inventory"


PRESENCE_PREFIX: Final = "location:"
PRESENCE_SUFFIX: Final = ":players"


def presence_key(location_id: object) -> str:
    return f"{PRESENCE_PREFIX}{check_name(location_id, 'location id')}{PRESENCE_SUFFIX}"


def location_cache_key(location_id: object) -> str:
    return f"location:{check_name(location_id, 'location id')}:cache"


def item_def_key(item_id: object) -> str:
    return f"item:{check_name(item_id, 'item id')}:def"


def npc_def_key(npc_id: object) -> str:
    return f"npc:{check_name(npc_id, 'npc id')}:def"


def worker_connections_key(worker_id: object) -> str:
    return f"worker:{check_name(worker_id, 'worker id')}:connections"


def worker_meta_key(worker_id: object) -> str:
    return f"worker:{check_name(worker_id, 'worker id')}:meta"


def lock_key(name: object) -> str:
    return f"lock:{check_name(name, 'lock name')}"


# -- channels ---------------------------------------------------------------------------
BROADCAST_CHANNEL: Final = "game:broadcast"
WORKERS_CHANNEL: Final = "game:workers"
LOCATION_CHANNEL_PATTERN: Final = "location:*"
PLAYER_CHANNEL_PATTERN: Final = "player:*"


def location_channel(location_id: object) -> str:
    return f"location:{check_name(location_id, 'location id')}"


def player_channel(character_id: object) -> str:
    return f"player:{check_character_id(character_id)}"


# -- keys of ours, namespaced so they never collide with game keys ----------------------
NAMESPACE: Final = "echoes"
GAMEDATA_VERSION_KEY: Final = f"{NAMESPACE}:gamedata:version"
# the location ids of the loaded gamedata (a set), so views need not SCAN for location keys
LOCATION_INDEX_KEY: Final = f"{NAMESPACE}:gamedata:locations"
FLAGS_KEY: Final = f"{NAMESPACE}:flags"
AUDIT_STREAM_KEY: Final = f"{NAMESPACE}:audit"
AUDIT_STREAM_MAXLEN: Final = 10_000
# stream ids of audit records PostgreSQL did not take yet (a set; emptied once copied)
AUDIT_UNSYNCED_KEY: Final = f"{NAMESPACE}:audit:unsynced"
LOCK_INFO_PREFIX: Final = f"{NAMESPACE}:lockinfo:"


PROBE_PREFIX: Final = f"{NAMESPACE}:probe:"
PROBE_PATTERN: Final = f"{PROBE_PREFIX}*"


def probe_key(token: object, n: int) -> str:
    """A scratch key a pre-flight writes, measures (MEMORY USAGE) and deletes at once."""
    return f"{PROBE_PREFIX}{check_name(token, 'probe token')}:{int(n)}"


def lock_info_key(name: object) -> str:
    """Why an operator holds ``lock:<name>`` (reason, operator, at, value); same TTL."""
    return f"{LOCK_INFO_PREFIX}{check_name(name, 'lock name')}"


# -- parsers ----------------------------------------------------------------------------
# A parser returns the id only if building the key from it gives back the same key, so
# whatever it returns is safe to pass to a builder (no glob characters, canonical numbers).


def _text(key: str | bytes) -> str | None:
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return key


def _parse_name(
    key: str | bytes, prefix: str, suffix: str, build: Callable[[str], str]
) -> str | None:
    text = _text(key)
    if text is None or not (text.startswith(prefix) and text.endswith(suffix)):
        return None
    middle = text[len(prefix) : len(text) - len(suffix)]
    try:
        return middle if build(middle) == text else None
    except InvalidIdError:
        return None


def _parse_character(key: str | bytes, prefix: str, suffix: str) -> int | None:
    text = _text(key)
    if text is None or not (text.startswith(prefix) and text.endswith(suffix)):
        return None
    middle = text[len(prefix) : len(text) - len(suffix)]
    if not (middle.isascii() and middle.isdigit()) or middle != str(int(middle)):
        return None
    number = int(middle)
    return number if number > 0 else None


def parse_session_key(key: str | bytes) -> int | None:
    return _parse_character(key, "player:", ":session")


def parse_inventory_key(key: str | bytes) -> int | None:
    return _parse_character(key, "player:", ":inventory")


def parse_presence_key(key: str | bytes) -> str | None:
    return _parse_name(key, "location:", ":players", presence_key)


def parse_location_cache_key(key: str | bytes) -> str | None:
    return _parse_name(key, "location:", ":cache", location_cache_key)


def parse_item_def_key(key: str | bytes) -> str | None:
    return _parse_name(key, "item:", ":def", item_def_key)


def parse_npc_def_key(key: str | bytes) -> str | None:
    return _parse_name(key, "npc:", ":def", npc_def_key)


def parse_worker_meta_key(key: str | bytes) -> str | None:
    return _parse_name(key, "worker:", ":meta", worker_meta_key)


def parse_worker_connections_key(key: str | bytes) -> str | None:
    return _parse_name(key, "worker:", ":connections", worker_connections_key)


def parse_lock_key(key: str | bytes) -> str | None:
    return _parse_name(key, "lock:", "", lock_key)


# -- key families (stats, doctor) -------------------------------------------------------
# Keys of ours all start with this prefix (``echoes:gamedata:version``, ``echoes:flags``, ...).
NAMESPACE_PREFIX: Final = f"{NAMESPACE}:"


def player_cache_keys(character_id: object) -> tuple[str, str]:
    """``(player:<id>:session, player:<id>:inventory)``, the id validated once (bulk writers)."""
    cid = check_character_id(character_id)
    return f"player:{cid}:session", f"player:{cid}:inventory"
