"""The atomic writer of preload (docs/design.md, decision 4): the whole diff as one
MULTI/EXEC, streamed in chunks, EXEC in the last one.

Redis queues the transaction and runs it as one unit at EXEC, so readers see the old dataset
or the new one, never a mix and never a gap. If the connection drops before EXEC the server
discards the queue (nothing applied); a stop or a lost lock is honoured before the chunk
that carries EXEC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from echoes_ops.client.bulk import Command, bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.errors import Interrupted
from echoes_ops.operations import preload_checks as checks
from echoes_ops.operations.static_data import Flat, flatten
from echoes_ops.operations.stop import StopToken
from echoes_ops.primitives.lease import Lease, LockLostError

Progress = Callable[[int, int], None]


async def swap(
    r: AnyRedis,
    commands: list[Command],
    batch: int,
    progress: Progress | None,
    token: StopToken,
    lease: Lease,
    version: str,
    previous: str | None,
) -> list[Any]:
    """Stream the transaction; stop (nothing written) before its last chunk, which carries
    EXEC, if asked to or if the lock was lost."""
    chunks = -(-len(commands) // batch)
    started = 0

    def before_chunk() -> bool:
        nonlocal started
        if token() or lease.lost.is_set():
            return True
        started += 1
        return False

    try:
        return await bulk(
            r, commands, chunk=batch, progress=progress, stop=before_chunk, raise_on_error=False
        )
    except Interrupted:
        if token():
            raise token.stopped(
                "nothing written (the transaction was discarded before EXEC)",
                {"committed": False},
            ) from None
        raise LockLostError(
            f"lost {lease.handle.key} while sending the transaction; nothing written "
            "(the transaction was discarded before EXEC)"
        ) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise await checks.cut_off(
            r,
            exc,
            exec_sent=started == chunks,
            version=version,
            previous=previous,
        ) from exc


def transaction(
    to_write: list[tuple[str, Flat]],
    to_remove: list[str],
    version: dict[str, str],
    *,
    location_ids: list[str],
    batch: int,
) -> list[Command]:
    """MULTI, DELs (in batches), one HSET per key, the location index, the version record,
    EXEC."""
    commands: list[Command] = [("MULTI",)]
    doomed = [key for key, _ in to_write] + to_remove
    for start in range(0, len(doomed), batch):
        commands.append(("DEL", *doomed[start : start + batch]))
    commands.extend([("HSET", key, *fields) for key, fields in to_write])
    commands.append(("DEL", keys.LOCATION_INDEX_KEY))
    for start in range(0, len(location_ids), batch):
        commands.append(("SADD", keys.LOCATION_INDEX_KEY, *location_ids[start : start + batch]))
    commands.append(("DEL", keys.GAMEDATA_VERSION_KEY))
    commands.append(("HSET", keys.GAMEDATA_VERSION_KEY, *flatten(version)))
    commands.append(("EXEC",))
    return commands
