"""Distributed locks as operators see them: list, show, hold, release, force-release, extend.

Values are ``<owner>#<hex>`` (ours, ``primitives/lock.py``) or a bare worker id (the plan's
code). An operator's owner is ``operator.<name>``. Every write is compare-and-act in Lua:
release deletes only the exact value the caller holds or saw, extend prolongs only that
value, so a lock that expired and was taken by a new owner meanwhile is never touched.

Why an operator holds a lock is kept beside it in ``echoes:lockinfo:<name>`` (reason,
operator, at, the lock's value), with the same TTL, and removed with the lock.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Literal

from redis.exceptions import RedisError

from echoes_ops.client.bulk import bulk, pairs
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import keys, scripts
from echoes_ops.contract.ids import check_name
from echoes_ops.errors import BusyError, ExitCode, NotFoundError, OpsError, RefusedError
from echoes_ops.operations.broadcast import BroadcastArgumentError, check_text
from echoes_ops.operations.holdowner import me_text, taker_fields, taker_text, took_it
from echoes_ops.operations.identity import Identity
from echoes_ops.operations.lockliveness import claims_of_workers, liveness, process_liveness
from echoes_ops.operations.lockowner import record_holder
from echoes_ops.primitives import lock

MAX_HOLD_SECONDS = 86_400
MAX_REASON_CHARS = 500
BATCH = 1000

OwnerKind = Literal["worker", "operator"]


class LockArgumentError(OpsError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class LockInfo:
    """One lock as read: its value, owner, TTL, and whether the owner is alive."""

    name: str
    key: str
    value: str
    owner: str
    owner_kind: OwnerKind
    has_token: bool  # ``<owner>#<hex>`` (ours); False for the plan's bare worker id
    ttl_ms: int  # PTTL: -1 no TTL (never expires), -2 gone
    alive: bool | None  # worker: alive or not; None for an operator hold
    liveness: str  # how ``alive`` was decided, in words
    hold: dict[str, str] | None  # reason/operator/at of an operator hold
    # workers whose own meta still claims this lock with another value: a former holder
    # that does not know it lost the lock (frozen, or not renewed yet)
    stale_claims: tuple[str, ...] = ()

    @property
    def operator(self) -> str | None:
        return lock.operator_of(self.owner)

    @property
    def no_ttl(self) -> bool:
        return self.ttl_ms == -1

    @property
    def owner_may_be_active(self) -> bool:
        """A live worker, or an operator's hold (deliberate, so treated as live)."""
        return self.alive is not False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "value": self.value,
            "owner": self.owner,
            "owner_kind": self.owner_kind,
            "operator": self.operator,
            "has_token": self.has_token,
            "ttl_ms": self.ttl_ms,
            "no_ttl": self.no_ttl,
            "alive": self.alive,
            "liveness": self.liveness,
            "hold": self.hold,
            "stale_claims": list(self.stale_claims),
        }


# -- reading ------------------------------------------------------------------------------


def _info(
    name: str,
    value: str,
    ttl_ms: int,
    live: tuple[bool | None, str],
    hold: dict[str, str],
) -> LockInfo:
    owner = lock.owner_of(value)
    if hold.get("value") == value:
        live = process_liveness(hold) or live
    return LockInfo(
        name=name,
        key=keys.lock_key(name),
        value=value,
        owner=owner,
        owner_kind="operator" if lock.operator_of(owner) is not None else "worker",
        has_token=lock.TOKEN_SEPARATOR in value,
        ttl_ms=ttl_ms,
        alive=live[0],
        liveness=live[1],
        # the info hash describes this lock only while it names the same value
        hold={k: v for k, v in hold.items() if k != "value"}
        if hold.get("value") == value
        else None,
    )


async def _read(r: AnyRedis, names: list[str], *, claims: bool = False) -> list[LockInfo]:
    commands: list[tuple[Any, ...]] = []
    for name in names:
        commands += [
            ("GET", keys.lock_key(name)),
            ("PTTL", keys.lock_key(name)),
            ("HGETALL", keys.lock_info_key(name)),
        ]
    replies = await bulk(r, commands, raise_on_error=False)
    found: list[tuple[str, str, int, dict[str, str]]] = []
    for index, name in enumerate(names):
        value, ttl, hold = replies[3 * index : 3 * index + 3]
        if isinstance(value, Exception):
            value = f"<not a string: {value}>"  # WRONGTYPE: someone wrote another type
        if value is None:
            continue  # gone between SCAN and GET
        found.append((name, str(value), ttl if isinstance(ttl, int) else -2, pairs(hold)))
    live = await liveness(r, {lock.owner_of(value) for _, value, _, _ in found})
    claimed = await claims_of_workers(r) if found and claims else {}
    return [
        replace(
            _info(name, value, ttl, live[lock.owner_of(value)], hold),
            stale_claims=tuple(
                sorted(wid for wid, token in claimed.get(name, []) if token != value)
            ),
        )
        for name, value, ttl, hold in found
    ]


async def list_locks(r: AnyRedis) -> list[LockInfo]:
    """Every ``lock:*`` key (SCAN), with owner, TTL and liveness, by name. The reads are
    pipelined in chunks (``bulk``); CLIENT LIST runs once."""
    names: set[str] = set()
    async for batch in scan_keys(r, keys.LOCK_PATTERN, count=BATCH):
        names.update(n for n in map(keys.parse_lock_key, batch) if n)
    return await _read(r, sorted(names), claims=True)


async def show_lock(r: AnyRedis, name: str) -> LockInfo:
    found = await _read(r, [check_name(name, "lock name")], claims=True)
    if not found:
        raise NotFoundError(f"no lock {keys.lock_key(name)} (not held, or expired)")
    return found[0]


# -- writing ------------------------------------------------------------------------------


def _ttl_ms(ttl: float) -> int:
    if not ttl > 0 or ttl > MAX_HOLD_SECONDS:
        raise LockArgumentError(f"--ttl must be more than 0 and at most {MAX_HOLD_SECONDS} s")
    return max(1, round(ttl * 1000))


def _describe(info: LockInfo) -> str:
    ttl = "no TTL" if info.no_ttl else f"TTL {info.ttl_ms / 1000:.1f}s"
    return f"{info.owner} ({ttl}, value {info.value!r})"


@dataclass(frozen=True)
class HoldResult:
    name: str
    key: str
    token: str | None  # None in a dry run
    owner: str
    ttl_ms: int
    reason: str
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "dry_run": self.dry_run,
            "token": self.token,
            "owner": self.owner,
            "ttl_ms": self.ttl_ms,
            "reason": self.reason,
        }


def _busy(current: LockInfo, me: str) -> BusyError:
    mine = " (you already hold it: see locks show, locks extend)" if current.owner == me else ""
    return BusyError(
        f"{current.key} is held by {_describe(current)}{mine}; nothing done",
        hint="wait for it, or release it (locks release --force) if its owner is dead",
    )


async def hold(
    r: AnyRedis,
    name: str,
    *,
    operator: str,
    ttl: float,
    reason: str,
    dry_run: bool = False,
    who: Identity | None = None,
) -> HoldResult:
    """Take ``lock:<name>`` as ``operator.<operator>`` (SET NX PX), so the background task
    that uses it pauses; record the reason beside it with the same TTL. Refuses (busy)
    when anyone holds it."""
    lock_name = check_name(name, "lock name")
    ttl_ms = _ttl_ms(ttl)
    try:
        check_text(reason, "--reason", limit=MAX_REASON_CHARS)
    except BroadcastArgumentError as exc:
        raise LockArgumentError(exc.message) from None
    owner = lock.operator_owner(operator)
    if dry_run:
        current = await _current(r, lock_name)
        if current is not None:
            raise _busy(current, owner)
        return HoldResult(lock_name, keys.lock_key(lock_name), None, owner, ttl_ms, reason, True)
    handle = await lock.try_acquire(r, lock_name, owner, ttl_ms / 1000)
    if handle is None:
        current = await _current(r, lock_name)
        if current is None:
            raise BusyError(
                f"{keys.lock_key(lock_name)} was taken and released while trying; nothing done",
                hint="retry",
            )
        raise _busy(current, owner)
    try:
        # who took it, as authenticated: what a release or extend without the token must
        # match (holdowner.took_it)
        taker = taker_fields(who) if who is not None else {}
        await record_holder(r, handle, operator=operator, reason=reason, **taker)
    except BaseException:
        # a hold without its reason is not a hold (e.g. the ACL user may take lock:* but not
        # write echoes:lockinfo:*), nor one interrupted here: give the lock back, so the
        # refusal changes nothing; if even that fails, the first error is the one to tell
        with contextlib.suppress(RedisError, OSError):
            await lock.release(r, handle.key, handle.token)
        raise
    return HoldResult(lock_name, handle.key, handle.token, owner, ttl_ms, reason)


@dataclass(frozen=True)
class ReleaseResult:
    name: str
    key: str
    released: bool
    compared: str  # the value compared against the lock, and where it came from
    value: str  # the value deleted (or that would be)
    owner: str
    dry_run: bool = False
    forced: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "dry_run": self.dry_run,
            "released": self.released,
            "compared": self.compared,
            "value": self.value,
            "owner": self.owner,
            "forced": self.forced,
            "note": self.note,
        }


async def _delete_exact(r: AnyRedis, name: str, value: str) -> bool:
    """Compare-and-delete the lock (RELEASE_LOCK) and, with it, its hold info."""
    released = await lock.release(r, keys.lock_key(name), value)
    if released:
        await r.register_script(scripts.DELETE_HASH_IF_FIELD)(
            keys=[keys.lock_info_key(name)], args=["value", value]
        )
    return released


async def _current(r: AnyRedis, name: str) -> LockInfo | None:
    found = await _read(r, [name])
    return found[0] if found else None


async def _yours(
    r: AnyRedis, lock_name: str, me: str, token: str | None, verb: str, who: Identity
) -> tuple[LockInfo, str, str]:
    """The lock, the value to compare and how it was chosen: ``token`` when given (it must
    be the current value), else the current value if its owner is ``me`` *and* ``who``
    took it (:func:`took_it`): a name anyone can declare is not enough."""
    key = keys.lock_key(lock_name)
    current = await _current(r, lock_name)
    if current is None:
        raise NotFoundError(f"no lock {key} (not held, or expired); nothing {verb}")
    if token is not None:
        if current.value != token:
            raise RefusedError(
                f"{key} holds {current.value!r} (owner {current.owner}), not the token you "
                f"gave ({token!r}); nothing {verb}",
                hint="give the exact value printed by locks hold; locks show prints the current one",
            )
        return current, token, f"--token {token!r}"
    if current.owner != me:
        raise RefusedError(
            f"{key} is held by {_describe(current)}, not by you ({me}); nothing {verb}",
            hint="give --token if you hold it under another name; to break a dead owner's "
            "lock: locks release --force",
        )
    if not took_it(current.hold, who):
        raise RefusedError(
            f"{key} is held as {me}, but it was taken by {taker_text(current.hold)}, not by "
            f"you ({me_text(who)}); nothing {verb}",
            hint="give its --token (printed by locks hold), or break it with locks release "
            "--force (audited)",
        )
    return current, current.value, f"value {current.value!r} read just now (owner {me}: you)"


async def release(
    r: AnyRedis,
    name: str,
    *,
    operator: str,
    who: Identity,
    token: str | None = None,
    dry_run: bool = False,
) -> ReleaseResult:
    """Release what you hold: with ``token``, only while the lock holds exactly it; without,
    only while the current value's owner is ``operator.<operator>`` and ``who`` took it.
    Either way the value is compared and deleted atomically (RELEASE_LOCK)."""
    lock_name = check_name(name, "lock name")
    me = lock.operator_owner(operator)
    current, value, compared = await _yours(r, lock_name, me, token, "released", who)
    if dry_run:
        return ReleaseResult(
            lock_name,
            current.key,
            False,
            compared,
            value,
            current.owner,
            True,
            note="would delete it",
        )
    if await _delete_exact(r, lock_name, value):
        return ReleaseResult(lock_name, current.key, True, compared, value, current.owner)
    raise RefusedError(
        f"{current.key} changed after it was read (it no longer holds {value!r}); nothing released",
        hint=f"look again: echoes-ops locks show {lock_name}",
    )


def force_refusal(info: LockInfo, *, even_if_alive: bool) -> RefusedError | None:
    """Why a force release must not go ahead, or None."""
    if not info.owner_may_be_active or even_if_alive:
        return None
    if info.owner_kind == "operator":
        reason = f" ({info.hold['reason']})" if info.hold and info.hold.get("reason") else ""
        who = f"operator {info.operator} holds it{reason}"
        hint = "ask them to release it, or add --even-if-alive to break the hold anyway"
    else:
        who = f"its owner {info.owner} is alive ({info.liveness})"
        hint = "stop the owner first, or add --even-if-alive to break it anyway"
    return RefusedError(f"{info.key}: {who}; refusing to force-release it", hint=hint)


def _taken_over(key: str, current: LockInfo, seen_value: str) -> BusyError:
    return BusyError(
        f"{key} now holds {current.value!r} (owner {current.owner}), not the value you "
        f"confirmed ({seen_value!r}): a new owner took it; nothing deleted",
        hint="look again before breaking it: echoes-ops locks show " + current.name,
    )


async def force_release(
    r: AnyRedis, name: str, *, seen_value: str, even_if_alive: bool = False
) -> ReleaseResult:
    """Delete ``lock:<name>`` only while it still holds ``seen_value`` (the value the
    operator saw and confirmed): a lock that expired and was taken by a new owner since is
    left alone (busy). Refuses while the owner is alive unless ``even_if_alive``."""
    lock_name = check_name(name, "lock name")
    key = keys.lock_key(lock_name)
    compared = f"value {seen_value!r} seen before confirming"
    gone = "already gone (expired or released meanwhile); nothing deleted"
    current = await _current(r, lock_name)
    if current is None:
        return ReleaseResult(
            lock_name,
            key,
            False,
            compared,
            seen_value,
            lock.owner_of(seen_value),
            forced=True,
            note=gone,
        )
    if current.value != seen_value:
        raise _taken_over(key, current, seen_value)
    refusal = force_refusal(current, even_if_alive=even_if_alive)
    if refusal is not None:
        raise refusal
    if await _delete_exact(r, lock_name, seen_value):
        return ReleaseResult(
            lock_name,
            key,
            True,
            compared,
            seen_value,
            current.owner,
            forced=True,
            note=f"owner: {current.liveness}",
        )
    after = await _current(r, lock_name)  # changed between the read and the delete
    if after is None:
        return ReleaseResult(
            lock_name, key, False, compared, seen_value, current.owner, forced=True, note=gone
        )
    raise _taken_over(key, after, seen_value)


@dataclass(frozen=True)
class ExtendResult:
    name: str
    key: str
    ttl_ms: int
    compared: str
    value: str
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "dry_run": self.dry_run,
            "ttl_ms": self.ttl_ms,
            "compared": self.compared,
            "value": self.value,
        }


async def extend(
    r: AnyRedis,
    name: str,
    *,
    ttl: float,
    operator: str,
    who: Identity,
    token: str | None = None,
    dry_run: bool = False,
) -> ExtendResult:
    """Reset the TTL (EXTEND_LOCK: compare-and-PEXPIRE) only while the lock holds
    ``token``; without one, only while its owner is ``operator.<operator>`` and ``who``
    took it."""
    lock_name = check_name(name, "lock name")
    ttl_ms = _ttl_ms(ttl)
    me = lock.operator_owner(operator)
    current, value, compared = await _yours(r, lock_name, me, token, "extended", who)
    if dry_run:
        return ExtendResult(lock_name, current.key, ttl_ms, compared, value, True)
    if not await lock.extend(r, current.key, value, ttl_ms / 1000):
        raise RefusedError(
            f"{current.key} changed after it was read (it no longer holds {value!r}); "
            "nothing extended",
            hint=f"look again: echoes-ops locks show {lock_name}",
        )
    await r.register_script(scripts.EXPIRE_HASH_IF_FIELD)(
        keys=[keys.lock_info_key(lock_name)], args=["value", value, ttl_ms]
    )
    return ExtendResult(lock_name, current.key, ttl_ms, compared, value)
