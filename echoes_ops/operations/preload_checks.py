"""What preload checks before and after its swap, and how it says what went wrong.

Before: memory headroom (from a measured estimate, ``preload_memory``). After EXEC: every
key of the dataset and the version record are there (a key evicted or deleted right after
the swap is a loss, named per kind, with how far ``evicted_keys`` rose meanwhile). When the
connection is cut mid-transaction: whether EXEC went out, what the version record says now,
and who holds the preload lock.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.contract.static import StaticKind
from echoes_ops.errors import DataLostError, OpsError, RefusedError, UnreachableError
from echoes_ops.operations.eviction import MemoryState, evicts_keys_without_ttl, memory_state
from echoes_ops.operations.preload_memory import MemoryEstimate
from echoes_ops.operations.preload_send import EXISTS_BATCH
from echoes_ops.operations.static_data import Encoded

HEADROOM_SHARE = 0.9
VERIFY_BATCH = EXISTS_BATCH  # keys per EXISTS when verifying what was written
REFUSAL_HINT = "raise maxmemory or free memory, then retry"


def check_headroom(state: MemoryState, needed: MemoryEstimate) -> None:
    """Raise :class:`RefusedError` if the transaction's peak would crowd maxmemory."""
    if state.maxmemory <= 0:
        return
    limit = int(state.maxmemory * HEADROOM_SHARE)
    if state.used + needed.peak_bytes > limit:
        raise RefusedError(
            f"not enough memory headroom: used {state.used:,} B + about "
            f"{needed.data_bytes:,} B for the new data (and {needed.queue_bytes:,} B while "
            f"the transaction is queued) exceeds {HEADROOM_SHARE:.0%} of maxmemory "
            f"{state.maxmemory:,} B; nothing written",
            hint=REFUSAL_HINT,
        )


def refused_by_server(replies: list[Any]) -> None:
    """Map an error reply of the transaction to one line: OOM (EXEC aborted, nothing
    written) is the documented memory refusal; any other error is raised as is."""
    errors = [reply for reply in replies if isinstance(reply, ResponseError)]
    exec_reply = replies[-1] if replies else None
    if isinstance(exec_reply, list):
        errors += [reply for reply in exec_reply if isinstance(reply, ResponseError)]
    if not errors:
        return
    oom = next((e for e in errors if isinstance(e, OutOfMemoryError)), None)
    if oom is not None:
        raise RefusedError(
            "not enough memory: Redis refused the transaction (used memory > maxmemory) and "
            "discarded it; nothing written",
            hint=REFUSAL_HINT,
        )
    raise errors[0]


async def verify(
    r: AnyRedis, encoded: Encoded, version: str, before: MemoryState, detail: dict[str, Any]
) -> dict[str, Any]:
    """Check that every key of the dataset, the location index and the version record
    exist (EXISTS, ``VERIFY_BATCH`` keys a call). Returns what was checked; raises
    :class:`DataLostError` naming what is missing, per kind."""
    kinds = [(kind, list(mappings)) for kind, mappings in encoded.items()]
    commands: list[tuple[Any, ...]] = []
    spans: list[tuple[StaticKind, int]] = []
    for kind, wanted in kinds:
        for start in range(0, len(wanted), VERIFY_BATCH):
            commands.append(("EXISTS", *wanted[start : start + VERIFY_BATCH]))
            spans.append((kind, len(wanted[start : start + VERIFY_BATCH])))
    commands.append(("EXISTS", keys.LOCATION_INDEX_KEY))
    commands.append(("HMGET", keys.GAMEDATA_VERSION_KEY, "content_hash"))
    replies = await bulk(r, commands)
    found: dict[str, int] = {kind.label: 0 for kind, _ in kinds}
    for (kind, _), reply in zip(spans, replies, strict=False):
        found[kind.label] += int(reply)
    totals = {kind.label: len(wanted) for kind, wanted in kinds}
    missing = {
        label: totals[label] - found[label] for label in totals if found[label] < totals[label]
    }
    index_ok = int(replies[-2]) == 1
    version_ok = isinstance(replies[-1], list) and replies[-1][:1] == [version]
    after = await memory_state(r)
    evicted = after.evicted_keys - before.evicted_keys
    checked = {"verified_keys": sum(found.values()), "evicted_keys_during": evicted}
    if not missing and index_ok and version_ok:
        return checked
    parts = [f"{label} {n:,} of {totals[label]:,}" for label, n in missing.items()]
    if not index_ok:
        parts.append("the location index")
    if not version_ok:
        parts.append("the version record")
    lost = sum(missing.values())
    cause = (
        f"evicted_keys rose by {evicted:,} during the preload (maxmemory-policy {after.policy})"
        if evicted > 0
        else "evicted_keys did not rise: something deleted them"
    )
    hint = (
        "keys without a TTL are evicted under allkeys-*: set maxmemory-policy volatile-lru "
        "(see echoes-ops doctor) or raise maxmemory, then preload again"
        if evicted > 0 and evicts_keys_without_ttl(after.policy)
        else "preload again, and find what deletes them (echoes-ops audit)"
    )
    raise DataLostError(
        f"preload committed version {version[:12]} but {lost:,} key(s) are already gone: "
        f"missing {', '.join(parts)}; {cause}",
        hint=hint,
        detail={
            **detail,
            "committed": True,
            "missing": missing,
            "index_missing": not index_ok,
            "version_record_missing": not version_ok,
            "evicted_keys_during": evicted,
        },
    )


async def cut_off(
    r: AnyRedis,
    cause: BaseException,
    *,
    exec_sent: bool,
    version: str,
    previous: str | None,
) -> UnreachableError:
    """The error for a preload whose connection was cut mid-transaction: whether anything
    changed (EXEC not sent: nothing; else what the version record says now, if readable).
    :func:`with_lock_state` adds what became of the lock."""
    reason = (str(cause).splitlines() or [type(cause).__name__])[0]
    now: str | None = None
    readable = True
    if exec_sent:
        try:
            stored = (await r.hmget(keys.GAMEDATA_VERSION_KEY, ["content_hash"]))[0]
            now = str(stored) if stored is not None else None
        except (RedisError, OSError):
            readable = False
    if not exec_sent:
        changed = "nothing changed (EXEC was never sent: the server discards the queue)"
    elif not readable:
        changed = (
            "EXEC was sent; whether it ran is unknown until Redis is back (the version record "
            f"then says: {version[:12]} means committed; echoes-ops status shows it)"
        )
    elif now == version:
        changed = f"the new version {version[:12]} was committed (the version record says so)"
    else:
        shown = (now or previous or "none")[:12]
        changed = f"nothing changed (the version record still says {shown})"
    return UnreachableError(
        f"preload cut off: the connection to Redis was lost during the transaction "
        f"({reason}); {changed}",
        detail={"cut_off": True, "exec_sent": exec_sent, "version_now": now},
    )


async def with_lock_state(
    r: AnyRedis, error: OpsError, *, name: str, token: str, owner: str, ttl: float
) -> OpsError:
    """``error`` with what became of this run's lock after it was cut off: released, or
    still held (by this process, about to exit) until its TTL runs out."""
    key = keys.lock_key(name)
    try:
        held = await r.get(key)
    except (RedisError, OSError):
        held = token  # unreachable: it stays until its TTL
    if held != token:
        state = f"{key} was released"
        hint = None
    else:
        state = f"{key} (owner {owner}, this process) stays until its TTL ({ttl:.0f} s) runs out"
        hint = f"if it blocks a retry: echoes-ops locks release {name} --force"
    return type(error)(
        f"{error.message}; {state}",
        hint=hint or error.hint,
        detail={**(error.detail or {}), "lock_released": held != token},
    )
