"""Hash slots: which slot a key lives in, and grouping keys or commands by slot.

On Redis Cluster a MULTI/EXEC or a Lua call may only touch keys of one slot. A write that
was one transaction on one server becomes one transaction per slot group here: each group
stays atomic, the whole does not (each operation documents the guarantee it then gives,
docs/design.md "Guarantees per topology"). The contract's keys carry no hash tags, so the
slot is CRC16 of the whole key (``redis.crc.key_slot``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.crc import key_slot

K = TypeVar("K", str, bytes)
C = TypeVar("C", bound=Sequence[Any])

# commands whose keys follow a numkeys argument: (name, index of numkeys)
_NUMKEYS_AT = {"EVAL": 2, "EVALSHA": 2, "EVAL_RO": 2, "EVALSHA_RO": 2, "FCALL": 2, "FCALL_RO": 2}
# commands that name no key: they run on one node as they are
KEYLESS = frozenset(
    {
        "MULTI", "EXEC", "DISCARD", "PING", "ECHO", "TIME", "INFO", "SCAN", "DBSIZE",
        "CLIENT", "CONFIG", "SLOWLOG", "LATENCY", "CLUSTER", "ACL", "COMMAND", "SCRIPT",
        "FUNCTION", "PUBSUB", "WAIT", "READONLY", "ASKING", "LASTSAVE", "RANDOMKEY",
        "FLUSHALL", "FLUSHDB", "ROLE", "HELLO", "AUTH", "SELECT",
    }
)  # fmt: skip
# container commands whose key follows a subcommand: MEMORY USAGE key, OBJECT ENCODING key
_KEY_AFTER_SUBCOMMAND = frozenset({"MEMORY", "OBJECT", "XINFO"})


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (0..16383)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def group_by_slot(keys: Iterable[K]) -> dict[int, list[K]]:
    """``keys`` by slot, each list in the order given (a key given twice appears twice)."""
    groups: dict[int, list[K]] = {}
    for key in keys:
        groups.setdefault(slot_of(key), []).append(key)
    return groups


def first_key(command: Sequence[Any]) -> str | bytes | None:
    """The first key a command names (``("HSET", key, ...)``, ``("EVALSHA", sha, n, key,
    ...)``); None for a command that names no key (MULTI, EXEC, TIME, a script with no keys)."""
    if not command:
        return None
    name = str(command[0]).upper() if not isinstance(command[0], bytes) else command[0].decode()
    name = name.upper()
    if name in KEYLESS:
        return None
    at = _NUMKEYS_AT.get(name)
    if name in _KEY_AFTER_SUBCOMMAND:
        if len(command) < 3:
            return None
        key = command[2]
    elif at is not None:
        if len(command) <= at + 1 or int(command[at]) < 1:
            return None
        key = command[at + 1]
    elif len(command) > 1:
        key = command[1]
    else:
        return None
    return key if isinstance(key, str | bytes) else str(key)


def command_slot(command: Sequence[Any]) -> int | None:
    key = first_key(command)
    return None if key is None else slot_of(key)


def group_commands(
    commands: Iterable[C], *, slot: Callable[[C], int | None] = command_slot
) -> dict[int, list[C]]:
    """Commands by the slot of their first key, each group in the order given. A command
    that names no key has no slot to go to: ValueError (run it per node instead)."""
    groups: dict[int, list[C]] = {}
    for command in commands:
        found = slot(command)
        if found is None:
            raise ValueError(f"{command[0]!r} names no key: it cannot be routed to a slot")
        groups.setdefault(found, []).append(command)
    return groups
