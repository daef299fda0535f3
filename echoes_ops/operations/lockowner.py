"""Locks a long operator command holds while it runs (preload, warmup).

The lock's TTL is short and renewed in the background (``primitives.lease``), so a run that
is cut off (its process killed, Redis killed and restarted from its AOF) blocks the next
one for at most that TTL. Beside the lock, ``echoes:lockinfo:<name>`` records who holds it
and from where (operator, host, pid, why), renewed and removed with the lock, so
``locks show`` and the next run can tell a running holder from one whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

from redis.exceptions import RedisError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.errors import BusyError, NotFoundError
from echoes_ops.primitives import lock
from echoes_ops.primitives.lease import Lease

# Short enough that a crashed run's lock is gone soon; renewed every third of it.
PROCESS_LOCK_TTL = 30.0


async def take(
    r: AnyRedis, name: str, *, operator: str, reason: str, ttl: float = PROCESS_LOCK_TTL
) -> Lease | None:
    """Take ``lock:<name>`` for this process, with its info hash; ``None`` when held.
    Use the lease as ``async with``: it renews both while the block runs."""
    handle = await lock.try_acquire(r, name, lock.operator_owner(operator), ttl)
    if handle is None:
        return None
    holder = {"host": socket.gethostname(), "pid": str(os.getpid())}
    try:
        info = await record_holder(r, handle, operator=operator, reason=reason, **holder)
    except BaseException:
        with contextlib.suppress(RedisError, OSError):
            await lock.release(r, handle.key, handle.token)
        raise
    return Lease(r, handle, ttl, info_key=info)


async def record_holder(
    r: AnyRedis, handle: lock.LockHandle, *, operator: str, reason: str, **extra: str
) -> str:
    """Write ``echoes:lockinfo:<name>`` for a lock just taken: who, why, when, its value
    (the info describes that value only), with the lock's TTL. Returns the info key."""
    info = keys.lock_info_key(handle.name)
    pipe = r.pipeline(transaction=True)
    pipe.delete(info)
    fields: dict[Any, Any] = {
        "reason": reason,
        "operator": operator,
        "at": f"{time.time():.3f}",
        "value": handle.token,
    }
    fields.update(extra)
    pipe.hset(info, mapping=fields)
    pipe.pexpire(info, handle.ttl_ms)
    await pipe.execute()
    return info


async def busy(r: AnyRedis, name: str, what: str) -> BusyError:
    """Why ``lock:<name>`` cannot be taken, naming its holder; when the holder's process is
    gone (a run that was cut off), the exact command that clears it."""
    from echoes_ops.operations.locks import show_lock

    key = keys.lock_key(name)
    try:
        info = await show_lock(r, name)
    except NotFoundError:  # released meanwhile
        return BusyError(f"another {what} was running ({key} was held); nothing done", hint="retry")
    ttl = "no TTL" if info.no_ttl else f"expires in {max(0, info.ttl_ms) / 1000:.0f} s"
    if info.alive is False:
        return BusyError(
            f"{key} is held by {info.owner}, but {info.liveness}: an earlier {what} was cut "
            f"off; its lock {ttl}; nothing done",
            hint=f"to clear it now: echoes-ops locks release {name} --force",
            detail={"lock_owner": info.owner, "owner_state": info.liveness},
        )
    return BusyError(
        f"another {what} is running: {key} is held by {info.owner} ({info.liveness}; {ttl}); "
        "nothing done",
        detail={"lock_owner": info.owner, "owner_state": info.liveness},
    )
