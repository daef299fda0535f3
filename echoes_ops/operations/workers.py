"""Game workers: who is alive, what they hold, and cleaning up after a dead one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from echoes_ops.client.bulk import bulk, bulk_scripts
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import codec, keys, repair_scripts, scripts
from echoes_ops.contract.ids import check_name
from echoes_ops.errors import DecodeError, NotFoundError, RefusedError
from echoes_ops.operations.tiermap import WorkerLiveness, hash_fields, worker_liveness

HDEL_FIELDS = 500  # connection entries per HDEL (a short command each)


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    alive: bool  # the process is there (see state: alive, unresponsive or dead)
    state: str
    meta_ttl: int
    client_connected: bool
    heartbeat_age: float | None
    connections: int
    players: int  # connections whose session still names this worker
    mode: str | None
    version: str | None
    pid: int | None
    host: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "alive": self.alive,
            "state": self.state,
            "meta_ttl": self.meta_ttl,
            "client_connected": self.client_connected,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 1),
            "connections": self.connections,
            "players": self.players,
            "mode": self.mode,
            "version": self.version,
            "pid": self.pid,
            "host": self.host,
        }


async def _players_naming(r: AnyRedis, worker_id: str) -> list[int]:
    """Character ids in the worker's connections hash whose session names the worker."""
    connections = await hash_fields(r, keys.worker_connections_key(worker_id))
    ids = [int(c) for c in connections if str(c).isdigit()]
    owners = await bulk(
        r, [("HGET", keys.session_key(cid), "worker_id") for cid in ids], raise_on_error=False
    )
    return [cid for cid, owner in zip(ids, owners, strict=True) if owner == worker_id]


async def _release_per_key(r: RedisCluster, wid: str, players: list[int]) -> tuple[int, int]:
    """The players' sessions and presence on a cluster, where a session, its presence set and
    the worker's connections hash lie in different slots. Three pipelined rounds (was three
    round trips per player): every session deleted by a call that re-checks it still names
    the worker (a player who reconnected elsewhere keeps it), then the players' connection
    entries, then the presence entries of the sessions deleted; so for each player the
    session goes first, as before. Returns (sessions, presence entries) removed; a refused
    call is raised once the entries of the sessions that were deleted are gone too."""
    released = await bulk_scripts(
        r,
        [(repair_scripts.RELEASE_SESSION_OF_WORKER, [keys.session_key(c)], [wid]) for c in players],
    )
    connections = keys.worker_connections_key(wid)
    fields = [str(cid) for cid in players]
    await bulk(
        r,
        [
            ("HDEL", connections, *fields[i : i + HDEL_FIELDS])
            for i in range(0, len(fields), HDEL_FIELDS)
        ],
    )
    removals: list[tuple[Any, ...]] = []
    for cid, was_at in zip(players, released, strict=True):
        if not was_at or isinstance(was_at, ResponseError):
            continue
        try:
            removals.append(("SREM", keys.presence_key(str(was_at)), str(cid)))
        except ValueError:  # a location id no key can be built from: no set to clean
            continue
    presence = sum(int(n) for n in await bulk(r, removals))
    refused = [reply for reply in released if isinstance(reply, ResponseError)]
    if refused:
        raise refused[0]
    sessions = sum(
        1 for reply in released if reply is not None and not isinstance(reply, ResponseError)
    )
    return sessions, presence


def _pid(raw: str | None) -> int | None:
    try:
        return codec.decode_int(raw)
    except DecodeError:
        return None


def _info(live: WorkerLiveness, players: int, now: float) -> WorkerInfo:
    heartbeat = codec.decode_epoch(live.meta.get("heartbeat"), now=now)
    return WorkerInfo(
        worker_id=live.worker_id,
        alive=live.alive,
        state=live.state,
        meta_ttl=live.meta_ttl,
        client_connected=live.client_connected,
        heartbeat_age=None if heartbeat is None else max(0.0, now - heartbeat),
        connections=live.connections,
        players=players,
        mode=live.meta.get("mode"),
        version=live.meta.get("version"),
        pid=_pid(live.meta.get("pid")),
        host=live.meta.get("host"),
    )


async def list_workers(r: AnyRedis) -> list[WorkerInfo]:
    now = time.time()
    liveness = await worker_liveness(r)
    out = []
    for wid, live in liveness.items():
        out.append(_info(live, len(await _players_naming(r, wid)), now))
    out.sort(key=lambda w: (not w.alive, w.worker_id))
    return out


@dataclass
class CleanupResult:
    worker_id: str
    dry_run: bool
    alive: bool
    sessions_removed: int
    presence_removed: int
    connections_removed: int
    meta_removed: bool
    players: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.worker_id,
            "dry_run": self.dry_run,
            "alive": self.alive,
            "sessions_removed": self.sessions_removed,
            "presence_removed": self.presence_removed,
            "connections_removed": self.connections_removed,
            "meta_removed": self.meta_removed,
            "players": self.players,
        }


async def cleanup_worker(
    r: AnyRedis, worker_id: str, *, force: bool = False, dry_run: bool = False
) -> CleanupResult:
    """Remove a dead worker's traces: for each of its connections, the session and presence
    entry (only while the session still names this worker: a player who reconnected
    elsewhere is left alone), then its connections hash and meta key.

    Refuses a live worker unless ``force``.
    """
    wid = check_name(worker_id, "worker id")
    liveness = await worker_liveness(r)
    live = liveness.get(wid)
    if live is None:
        raise NotFoundError(f"no worker {wid!r} (no meta or connections key)")
    if live.alive and not force:
        raise RefusedError(
            f"worker {wid} is alive (meta TTL {live.meta_ttl}s, client connected: "
            f"{'yes' if live.client_connected else 'no'}); refusing to clean it up",
            hint="stop the worker first, or pass --force if it is wedged",
        )
    players = await _players_naming(r, wid)
    connections = await r.hlen(keys.worker_connections_key(wid))
    if dry_run:
        return CleanupResult(
            wid, True, live.alive, len(players), len(players), connections, bool(live.meta), players
        )
    if isinstance(r, RedisCluster):
        sessions, presence = await _release_per_key(r, wid, players)
        # two slots, two calls: the meta key last, so a cleanup cut short leaves the worker
        # listed (and a second run finishes it)
        conn_removed = await r.delete(keys.worker_connections_key(wid))
        meta_removed = await r.delete(keys.worker_meta_key(wid))
    else:
        release = r.register_script(scripts.RELEASE_PLAYER_OF_WORKER)
        sessions = presence = 0
        for cid in players:
            removed_session, removed_presence = await release(
                keys=[keys.session_key(cid), keys.worker_connections_key(wid)],
                args=[str(cid), wid, keys.PRESENCE_PREFIX, keys.PRESENCE_SUFFIX],
            )
            sessions += int(removed_session)
            presence += int(removed_presence)
        pipe = r.pipeline(transaction=True)
        pipe.delete(keys.worker_connections_key(wid))
        pipe.delete(keys.worker_meta_key(wid))
        conn_removed, meta_removed = await pipe.execute()
    return CleanupResult(
        worker_id=wid,
        dry_run=False,
        alive=live.alive,
        sessions_removed=sessions,
        presence_removed=presence,
        connections_removed=connections if conn_removed else 0,
        meta_removed=bool(meta_removed),
        players=players,
    )
