"""Distributed locks on ``lock:<name>`` keys (docs/design.md, decision 1).

The value is ``<owner>#<random hex>``: unique per acquisition, with the owner still readable.
Release and extend are compare-and-delete / compare-and-expire in Lua, so a holder whose TTL
ran out can never delete or prolong the next owner's lock. Values written by the plan's own
code (a bare worker id) are read as an owner with no token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys, scripts
from echoes_ops.contract.ids import check_name

TOKEN_SEPARATOR = "#"
OPERATOR_PREFIX = "operator."


def operator_owner(operator: str) -> str:
    """The lock owner naming an operator: ``operator.<name>``, with anything but letters,
    digits, ``-``, ``_`` and ``.`` in the name replaced by ``_``."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in operator)
    return f"{OPERATOR_PREFIX}{cleaned or 'unknown'}"


def operator_of(owner: str) -> str | None:
    """The operator name in an ``operator.<name>`` owner; ``None`` for a worker owner."""
    return owner[len(OPERATOR_PREFIX) :] if owner.startswith(OPERATOR_PREFIX) else None


def new_token(owner: str) -> str:
    return f"{check_name(owner, 'lock owner')}{TOKEN_SEPARATOR}{secrets.token_hex(12)}"


def owner_of(value: str) -> str:
    """The owner named by a lock value (ours or the plan's bare worker id)."""
    owner, sep, _ = value.rpartition(TOKEN_SEPARATOR)
    return owner if sep else value


@dataclass(frozen=True)
class LockHandle:
    name: str
    key: str
    token: str
    ttl_ms: int


async def try_acquire(r: AnyRedis, name: str, owner: str, ttl_seconds: float) -> LockHandle | None:
    """SET NX PX with a fresh token; ``None`` when someone else holds the lock."""
    key = keys.lock_key(name)
    token = new_token(owner)
    ttl_ms = max(1, int(ttl_seconds * 1000))
    acquired = await r.set(key, token, nx=True, px=ttl_ms)
    return LockHandle(name, key, token, ttl_ms) if acquired else None


async def release(r: AnyRedis, key: str, token: str) -> bool:
    """Delete the lock only if it still holds ``token``."""
    script = r.register_script(scripts.RELEASE_LOCK)
    return bool(await script(keys=[key], args=[token]))


async def extend(r: AnyRedis, key: str, token: str, ttl_seconds: float) -> bool:
    """Reset the TTL only if the lock still holds ``token``."""
    script = r.register_script(scripts.EXTEND_LOCK)
    return bool(await script(keys=[key], args=[token, max(1, int(ttl_seconds * 1000))]))


async def extend_info(r: AnyRedis, info_key: str, token: str, ttl_seconds: float) -> bool:
    """Reset the TTL of a lock's info hash while it still describes ``token``."""
    script = r.register_script(scripts.EXPIRE_HASH_IF_FIELD)
    ttl_ms = max(1, int(ttl_seconds * 1000))
    return bool(await script(keys=[info_key], args=["value", token, ttl_ms]))


async def drop_info(r: AnyRedis, info_key: str, token: str) -> bool:
    """Delete a lock's info hash while it still describes ``token``."""
    script = r.register_script(scripts.DELETE_HASH_IF_FIELD)
    return bool(await script(keys=[info_key], args=["value", token]))
