"""Reading the tier's live state in bounded steps: SCAN with COUNT for keys, pipelined
(C-packed) batches for values. Shared by the session, location, worker and reconcile views.

No call here issues KEYS, SMEMBERS or HGETALL on a key of unbounded size: presence sets are
read with SSCAN, and every batch is at most ``BATCH`` commands.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from echoes_ops.client.bulk import bulk, pairs
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import keys
from echoes_ops.contract.session import Session

BATCH = 1000
SSCAN_COUNT = 1000


@dataclass(frozen=True)
class SessionRow:
    """A session as the views show it."""

    session: Session
    ttl: int  # seconds; -1 no TTL, -2 gone

    @property
    def character_id(self) -> int:
        return self.session.character_id


async def session_batches(
    r: Redis, *, fields: Sequence[str] | None = None
) -> AsyncIterator[list[SessionRow]]:
    """Every session, in batches: HGETALL (or HMGET ``fields``) and TTL per key."""
    now = time.time()
    async for batch in scan_keys(r, keys.SESSION_PATTERN, count=BATCH):
        ids = [(key, keys.parse_session_key(key)) for key in batch]
        valid = [(key, cid) for key, cid in ids if cid is not None]
        commands: list[tuple[Any, ...]] = []
        for key, _ in valid:
            commands.append(("HMGET", key, *fields) if fields else ("HGETALL", key))
            commands.append(("TTL", key))
        replies = await bulk(r, commands, raise_on_error=False)
        rows = []
        for index, (_, cid) in enumerate(valid):
            raw, ttl = replies[2 * index], replies[2 * index + 1]
            if fields:
                values = raw if isinstance(raw, list) else []
                mapping = {f: v for f, v in zip(fields, values, strict=False) if v is not None}
            else:
                mapping = pairs(raw)
            if not mapping:
                continue  # expired between SCAN and read
            assert cid is not None
            rows.append(
                SessionRow(
                    Session.decode(cid, mapping, now=now), ttl if isinstance(ttl, int) else -2
                )
            )
        if rows:
            yield rows


async def read_sessions(r: Redis, ids: Sequence[int]) -> dict[int, SessionRow]:
    """Full sessions (HGETALL + TTL) for ``ids``, pipelined; missing ones are left out."""
    now = time.time()
    commands: list[tuple[Any, ...]] = []
    for cid in ids:
        commands.append(("HGETALL", keys.session_key(cid)))
        commands.append(("TTL", keys.session_key(cid)))
    replies = await bulk(r, commands, raise_on_error=False)
    out = {}
    for index, cid in enumerate(ids):
        mapping = pairs(replies[2 * index])
        if mapping:
            ttl = replies[2 * index + 1]
            out[cid] = SessionRow(
                Session.decode(cid, mapping, now=now), ttl if isinstance(ttl, int) else -2
            )
    return out


async def presence_sets(r: Redis) -> list[tuple[str, str]]:
    """(location id, key) of every presence set."""
    found: dict[str, str] = {}
    async for batch in scan_keys(r, keys.PRESENCE_PATTERN, count=BATCH):
        for key in batch:
            loc = keys.parse_presence_key(key)
            if loc is not None:
                found[loc] = key
    return sorted(found.items())


async def set_members(r: Redis, key: str) -> set[str]:
    """All members of a set, read with SSCAN (bounded work per call)."""
    members: set[str] = set()
    cursor = 0
    while True:
        cursor, batch = await r.sscan(key, cursor, count=SSCAN_COUNT)
        members.update(str(m) for m in batch)
        if cursor == 0:
            return members


async def location_names(r: Redis, location_ids: Sequence[str]) -> dict[str, str]:
    """Display names from the static cache (``name`` field); missing ones are left out."""
    replies = await bulk(
        r,
        [("HGET", keys.location_cache_key(loc), "name") for loc in location_ids],
        raise_on_error=False,
    )
    return {
        loc: name for loc, name in zip(location_ids, replies, strict=True) if isinstance(name, str)
    }


@dataclass(frozen=True)
class WorkerLiveness:
    worker_id: str
    meta: dict[str, str]
    meta_ttl: int
    client_connected: bool
    connections: int

    clients_visible: bool = True  # False when the ACL user may not run CLIENT LIST

    @property
    def alive(self) -> bool:
        """A worker is alive while a client with its name is connected. A meta key left
        after a crash lives on until its short TTL runs out, so it only decides when
        CLIENT LIST is not allowed."""
        if self.clients_visible:
            return self.client_connected
        return bool(self.meta)


async def worker_liveness(r: Redis) -> dict[str, WorkerLiveness]:
    ids: set[str] = set()
    async for batch in scan_keys(r, keys.WORKER_META_PATTERN, count=BATCH):
        ids.update(w for w in map(keys.parse_worker_meta_key, batch) if w)
    async for batch in scan_keys(r, keys.WORKER_CONNECTIONS_PATTERN, count=BATCH):
        ids.update(w for w in map(keys.parse_worker_connections_key, batch) if w)
    names = await client_names(r)
    ordered = sorted(ids)
    commands: list[tuple[Any, ...]] = []
    for wid in ordered:
        commands += [
            ("HGETALL", keys.worker_meta_key(wid)),
            ("TTL", keys.worker_meta_key(wid)),
            ("HLEN", keys.worker_connections_key(wid)),
        ]
    replies = await bulk(r, commands, raise_on_error=False)
    out = {}
    for index, wid in enumerate(ordered):
        meta, ttl, conns = replies[3 * index : 3 * index + 3]
        out[wid] = WorkerLiveness(
            worker_id=wid,
            meta=pairs(meta),
            meta_ttl=ttl if isinstance(ttl, int) else -2,
            client_connected=names is not None and wid in names,
            connections=conns if isinstance(conns, int) else 0,
            clients_visible=names is not None,
        )
    return out


async def client_names(r: Redis) -> set[str] | None:
    """Names of connected clients (workers set theirs to their id), or None when the ACL
    user may not run CLIENT LIST. CLIENT LIST is O(clients)."""
    try:
        clients = await r.client_list()
    except NoPermissionError:
        return None
    return {c.get("name", "") for c in clients if c.get("name")}
