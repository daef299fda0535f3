"""Why the server dropped a subscriber: named, not a bare "reconnected".

Redis closes a pub/sub client whose pending output passes ``client-output-buffer-limit
pubsub`` (default 32mb hard, 8mb for 60 s): a subscriber that reads more slowly than
messages arrive. The client only sees the connection close. A :class:`ServerMark` taken
while connected (run_id, the server's count of such disconnections where it keeps one,
Redis >= 7.2) lets the reconnected client say which it was: the
server restarted, the limit dropped us (counted), or the server closed us while staying up
(Redis 7.0 does not count: the limit or a CLIENT KILL, both named).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

COUNTER = "client_output_buffer_limit_disconnections"


@dataclass(frozen=True)
class ServerMark:
    run_id: str | None
    dropped: int | None  # COUNTER, where the server keeps it


async def mark(r: Redis | RedisCluster) -> ServerMark | None:
    """Read what later tells a drop from a restart; ``None`` if the server will not say.
    On a cluster always ``None``: a subscriber there holds connections to several nodes
    and INFO reaches one of them, so it cannot tell why another dropped it (a failover, a
    restart, a kill): the connection error itself names the node."""
    if isinstance(r, RedisCluster):
        return None
    try:
        info = await r.info("server", "stats")
    except (rx.RedisError, OSError, TimeoutError):
        return None
    dropped = info.get(COUNTER)
    return ServerMark(
        run_id=str(info.get("run_id") or "") or None,
        dropped=int(dropped) if dropped is not None else None,
    )


async def cause(r: Redis | RedisCluster, before: ServerMark | None, error: str) -> str:
    """``error`` with the drop's cause, read from the server once reconnected."""
    after = await mark(r) if before is not None else None
    if before is None or after is None:
        return error
    limit = "client-output-buffer-limit pubsub (its value: CONFIG GET client-output-buffer-limit)"
    if before.run_id and after.run_id and before.run_id != after.run_id:
        return f"{error} (the server restarted)"
    if before.dropped is not None and after.dropped is not None:
        if after.dropped > before.dropped:
            return (
                f"Redis dropped this subscriber: its pending output passed {limit} (it read "
                "more slowly than messages arrived)"
            )
        return f"{error} (the server stayed up; not dropped for its output buffer)"
    return (
        f"{error}: the server closed the connection and stayed up; it drops a subscriber "
        f"whose pending output passes {limit} (one that reads more slowly than messages "
        "arrive), or someone ran CLIENT KILL"
    )
