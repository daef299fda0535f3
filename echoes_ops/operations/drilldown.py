"""Bounded detail reads for drilling into one worker or one player's inventory.

A worker's connections hash can hold thousands of players: it is read with HSCAN up to
``limit`` entries, never HGETALL/HKEYS; an inventory with LRANGE of its first entries.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import NotFoundError
from echoes_ops.operations.tiermap import WorkerLiveness, read_sessions, worker_liveness

WORKER_PLAYERS: Final = 100
INVENTORY_ROWS: Final = 20
HSCAN_COUNT: Final = 200


@dataclass(frozen=True)
class WorkerPlayer:
    character_id: int
    username: str | None
    location_id: str | None
    has_session: bool
    names_worker: bool  # the session names this worker (False: reconnected elsewhere)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkerDetail:
    liveness: WorkerLiveness
    players: list[WorkerPlayer] = field(default_factory=list)
    more: bool = False  # the connections hash holds more than were read

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.liveness.worker_id,
            "alive": self.liveness.alive,
            "meta": self.liveness.meta,
            "meta_ttl": self.liveness.meta_ttl,
            "connections": self.liveness.connections,
            "players": [p.as_dict() for p in self.players],
            "more": self.more,
        }


async def worker_detail(
    r: AnyRedis, worker_id: str, *, limit: int = WORKER_PLAYERS
) -> WorkerDetail:
    """The worker's liveness and up to ``limit`` of its connected players with a session
    summary each."""
    wid = check_name(worker_id, "worker id")
    live = (await worker_liveness(r, {wid}))[wid]
    if not live.meta and not live.connections and not live.client_connected:
        raise NotFoundError(f"no worker {wid!r} (no meta or connections key)")
    ids: list[int] = []
    cursor = 0
    while len(ids) < limit:
        cursor, found = await r.hscan(keys.worker_connections_key(wid), cursor, count=HSCAN_COUNT)
        ids += [int(c) for c in found if str(c).isdigit() and str(c).isascii()]
        if cursor == 0:
            break
    more = len(ids) > limit or cursor != 0
    ids = sorted(set(ids))[:limit]
    sessions = await read_sessions(r, ids)
    players = []
    for cid in ids:
        row = sessions.get(cid)
        s = row.session if row else None
        players.append(
            WorkerPlayer(
                character_id=cid,
                username=s.username if s else None,
                location_id=s.location_id if s else None,
                has_session=s is not None,
                names_worker=s is not None and s.worker_id == wid,
            )
        )
    return WorkerDetail(live, players, more)


@dataclass
class InventoryPreview:
    character_id: int
    total: int  # LLEN
    ttl: int  # -1 none, -2 no inventory cached
    rows: list[dict[str, Any]] = field(default_factory=list)  # the first entries, decoded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def inventory_preview(
    r: AnyRedis, character_id: int, *, limit: int = INVENTORY_ROWS
) -> InventoryPreview:
    """The cached inventory's size, TTL and first ``limit`` rows (JSON; an entry that does
    not decode is kept as ``{"raw": text}``)."""
    cid = check_character_id(character_id)
    key = keys.inventory_key(cid)
    total, ttl, entries = await bulk(
        r, [("LLEN", key), ("TTL", key), ("LRANGE", key, 0, limit - 1)], raise_on_error=False
    )
    rows: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        text = entry.decode("utf-8", "replace") if isinstance(entry, bytes) else str(entry)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        rows.append(value if isinstance(value, dict) else {"raw": text})
    return InventoryPreview(
        character_id=cid,
        total=total if isinstance(total, int) else 0,
        ttl=ttl if isinstance(ttl, int) else -2,
        rows=rows,
    )
