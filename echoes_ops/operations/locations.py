"""Who is where: players per location, and one location's members."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.contract.ids import check_name
from echoes_ops.errors import NotFoundError
from echoes_ops.operations.tiermap import location_names, presence_sets, read_sessions, set_members


@dataclass(frozen=True)
class LocationCount:
    location_id: str
    name: str | None
    players: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.location_id, "name": self.name, "players": self.players}


@dataclass
class LocationList:
    locations: list[LocationCount]
    total_players: int
    total_locations: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_players": self.total_players,
            "total_locations": self.total_locations,
            "locations": [loc.as_dict() for loc in self.locations],
        }


async def known_presence_sets(r: AnyRedis) -> list[tuple[str, str]]:
    """(location id, presence key) for the loaded gamedata's locations, from the location
    index preload writes (one SSCAN pass over a few hundred ids), else by SCAN over the
    keyspace (slow on a big server: preload to create the index)."""
    if await r.exists(keys.LOCATION_INDEX_KEY):
        ids = sorted(await set_members(r, keys.LOCATION_INDEX_KEY))
        return [(loc, keys.presence_key(loc)) for loc in ids]
    return await presence_sets(r)


async def list_locations(r: AnyRedis, *, top: int | None = None) -> LocationList:
    """Players per location, most first (pipelined SCARD and names). Locations outside the
    loaded gamedata are not listed; ``reconcile`` reports their sets as unknown_location."""
    sets = await known_presence_sets(r)
    sizes = await bulk(r, [("SCARD", key) for _, key in sets], raise_on_error=False)
    counts = [
        (loc, size if isinstance(size, int) else 0)
        for (loc, _), size in zip(sets, sizes, strict=True)
    ]
    counts = [(loc, n) for loc, n in counts if n > 0]
    counts.sort(key=lambda item: (-item[1], item[0]))
    shown = counts[:top] if top is not None else counts
    names = await location_names(r, [loc for loc, _ in shown])
    return LocationList(
        locations=[LocationCount(loc, names.get(loc), n) for loc, n in shown],
        total_players=sum(n for _, n in counts),
        total_locations=len(counts),
    )


@dataclass(frozen=True)
class Member:
    character_id: int
    username: str | None
    worker_id: str | None
    level: int | None
    hp: int | None
    heartbeat_age: float | None
    session_location: str | None  # where the session says the player is
    has_session: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.character_id,
            "username": self.username,
            "worker_id": self.worker_id,
            "level": self.level,
            "hp": self.hp,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 1),
            "session_location": self.session_location,
            "has_session": self.has_session,
        }


@dataclass
class LocationDetail:
    location_id: str
    name: str | None
    members: list[Member] = field(default_factory=list)
    non_numeric: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[Member]:
        return [
            m for m in self.members if not m.has_session or m.session_location != self.location_id
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.location_id,
            "name": self.name,
            "players": len(self.members),
            "members": [m.as_dict() for m in self.members],
            "drifted": [m.character_id for m in self.drifted],
            "non_numeric_members": self.non_numeric,
        }


async def show_location(r: AnyRedis, location_id: str) -> LocationDetail:
    """The location's members with a session summary each (SSCAN, pipelined reads)."""
    loc = check_name(location_id, "location id")
    raw = await set_members(r, keys.presence_key(loc))
    ids = sorted(int(m) for m in raw if m.isdigit() and m.isascii())
    sessions = await read_sessions(r, ids)
    now = time.time()
    members = []
    for cid in ids:
        row = sessions.get(cid)
        s = row.session if row else None
        members.append(
            Member(
                character_id=cid,
                username=s.username if s else None,
                worker_id=s.worker_id if s else None,
                level=s.level if s else None,
                hp=s.hp if s else None,
                heartbeat_age=s.heartbeat_age(now) if s else None,
                session_location=s.location_id if s else None,
                has_session=s is not None,
            )
        )
    names = await location_names(r, [loc])
    if not raw and loc not in names:
        raise NotFoundError(
            f"no location {loc!r}: not in the static cache and nobody there",
            hint="see: echoes-ops locations list",
        )
    return LocationDetail(
        location_id=loc,
        name=names.get(loc),
        members=members,
        non_numeric=sorted(m for m in raw if not (m.isdigit() and m.isascii())),
    )
