"""Players as game state: list, show and kick sessions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.slotwrites import transactions_per_slot
from echoes_ops.contract import envelopes, keys, scripts
from echoes_ops.contract.ids import check_character_id
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode
from echoes_ops.contract.session import fields_json
from echoes_ops.errors import NotFoundError
from echoes_ops.operations.tiermap import (
    SessionRow,
    client_names,
    location_names,
    presence_sets,
    read_sessions,
    session_batches,
)
from echoes_ops.primitives.publish import publish

SortField = Literal["id", "username", "location", "worker", "level", "hp", "ttl", "heartbeat"]
SORT_FIELDS: tuple[str, ...] = (
    "id",
    "username",
    "location",
    "worker",
    "level",
    "hp",
    "ttl",
    "heartbeat",
)


@dataclass(frozen=True)
class SessionSummary:
    character_id: int
    username: str | None
    location_id: str | None
    location_name: str | None
    worker_id: str | None
    hp: int | None
    max_hp: int | None
    stamina: int | None
    max_stamina: int | None
    level: int | None
    ttl: int
    heartbeat_age: float | None  # None: unknown (missing or not wall-clock seconds)
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.character_id,
            "username": self.username,
            "location_id": self.location_id,
            "location_name": self.location_name,
            "worker_id": self.worker_id,
            "hp": self.hp,
            "max_hp": self.max_hp,
            "stamina": self.stamina,
            "max_stamina": self.max_stamina,
            "level": self.level,
            "ttl": self.ttl,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 1),
            "stale": self.stale,
        }


@dataclass
class SessionList:
    total: int  # sessions matching the filters, before --limit
    scanned: int  # sessions read
    rows: list[SessionSummary] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "scanned": self.scanned,
            "shown": len(self.rows),
            "sessions": [row.as_dict() for row in self.rows],
        }


def _summary(
    row: SessionRow, now: float, stale_after: float | None, names: dict[str, str]
) -> SessionSummary:
    s = row.session
    age = s.heartbeat_age(now)
    return SessionSummary(
        character_id=s.character_id,
        username=s.username,
        location_id=s.location_id,
        location_name=names.get(s.location_id or ""),
        worker_id=s.worker_id,
        hp=s.hp,
        max_hp=s.max_hp,
        stamina=s.stamina,
        max_stamina=s.max_stamina,
        level=s.level,
        ttl=row.ttl,
        heartbeat_age=age,
        stale=stale_after is not None and age is not None and age > stale_after,
    )


def _sort_key(name: str) -> Any:
    def key(row: SessionSummary) -> tuple[Any, ...]:
        value = {
            "id": row.character_id,
            "username": (row.username or "").lower(),
            "location": row.location_id or "",
            "worker": row.worker_id or "",
            "level": row.level if row.level is not None else -1,
            "hp": row.hp if row.hp is not None else -1,
            "ttl": row.ttl,
            "heartbeat": row.heartbeat_age if row.heartbeat_age is not None else float("inf"),
        }[name]
        return (value, row.character_id)

    return key


async def list_sessions(
    r: AnyRedis,
    *,
    location: str | None = None,
    worker: str | None = None,
    stale_after: float | None = None,
    limit: int | None = None,
    sort: str = "id",
    descending: bool = False,
) -> SessionList:
    """Sessions matching the filters. ``stale_after`` keeps only sessions whose heartbeat is
    known and older than that many seconds (an unknown heartbeat is never stale).

    With only ``stale_after`` given, a first pass reads just ``last_heartbeat`` per session
    and full rows are fetched for the stale ones, so a mostly-healthy server costs little.
    """
    if sort not in SORT_FIELDS:
        raise ValueError(f"unknown sort field {sort!r}")
    now = time.time()
    rows: list[SessionRow] = []
    matched: list[int] = []
    # with --stale only stale sessions come back from the server-side filter
    cutoff = None if stale_after is None else now - stale_after
    async for batch in session_batches(r, stale_before=cutoff, counter=matched):
        rows.extend(batch)
    scanned = sum(matched)
    rows = [
        row
        for row in rows
        if (location is None or row.session.location_id == location)
        and (worker is None or row.session.worker_id == worker)
    ]
    names = await location_names(r, sorted({row.session.location_id or "" for row in rows} - {""}))
    summaries = [_summary(row, now, stale_after, names) for row in rows]
    if stale_after is not None:
        summaries = [s for s in summaries if s.stale]
    summaries.sort(key=_sort_key(sort), reverse=descending)
    total = len(summaries)
    if limit is not None:
        summaries = summaries[:limit]
    return SessionList(total=total, scanned=scanned, rows=summaries)


@dataclass
class SessionDetail:
    summary: SessionSummary
    fields: dict[str, str]
    problems: list[str]
    inventory_items: int
    inventory_ttl: int
    in_locations: list[str]
    worker_alive: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "fields": fields_json(self.fields),
            "problems": self.problems,
            "inventory": {"items": self.inventory_items, "ttl": self.inventory_ttl},
            "in_locations": self.in_locations,
            "worker_alive": self.worker_alive,
        }


async def locations_holding(r: AnyRedis, character_id: int) -> list[str]:
    """Every location set that has the player (SCAN the sets, pipelined SISMEMBER)."""
    sets = await presence_sets(r)
    replies = await bulk(r, [("SISMEMBER", key, str(character_id)) for _, key in sets])
    return [loc for (loc, _), found in zip(sets, replies, strict=True) if found]


async def show_session(r: AnyRedis, character_id: int) -> SessionDetail:
    cid = check_character_id(character_id)
    found = await read_sessions(r, [cid])
    in_locations = await locations_holding(r, cid)
    if cid not in found:
        raise NotFoundError(
            f"no session for player {cid}"
            + (f" (but listed in {', '.join(in_locations)}: drift)" if in_locations else "")
        )
    row = found[cid]
    inv_len, inv_ttl, meta_exists = await bulk(
        r,
        [
            ("LLEN", keys.inventory_key(cid)),
            ("TTL", keys.inventory_key(cid)),
            ("EXISTS", keys.worker_meta_key(row.session.worker_id or "unknown")),
        ],
        raise_on_error=False,
    )
    worker_alive: bool | None = None
    if row.session.worker_id:
        clients = await client_names(r)
        worker_alive = (
            row.session.worker_id in clients if clients is not None else bool(meta_exists)
        )
    names = await location_names(r, [row.session.location_id] if row.session.location_id else [])
    raw = await r.hgetall(keys.session_key(cid))
    return SessionDetail(
        summary=_summary(row, time.time(), None, names),
        fields={str(k): str(v) for k, v in raw.items()},
        problems=list(row.session.problems),
        inventory_items=inv_len if isinstance(inv_len, int) else 0,
        inventory_ttl=inv_ttl if isinstance(inv_ttl, int) else -2,
        in_locations=in_locations,
        worker_alive=worker_alive,
    )


@dataclass
class KickResult:
    character_id: int
    dry_run: bool
    removed_session: bool
    removed_from: list[str]
    worker_id: str | None
    notified: int  # subscribers that received the personal message

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.character_id,
            "dry_run": self.dry_run,
            "removed_session": self.removed_session,
            "removed_from": self.removed_from,
            "worker_id": self.worker_id,
            "notified": self.notified,
        }


async def kick(
    r: AnyRedis,
    character_id: int,
    *,
    reason: str,
    dry_run: bool = False,
    mode: PubSubMode = DEFAULT_MODE,
) -> KickResult:
    """Remove the session, every presence entry and the worker's connection entry in one
    transaction, then tell the player on their channel."""
    cid = check_character_id(character_id)
    in_locations = await locations_holding(r, cid)
    stored_worker = await r.hget(keys.session_key(cid), "worker_id")
    worker_id = str(stored_worker) if stored_worker else None
    exists = bool(await r.exists(keys.session_key(cid)))
    if not exists and not in_locations:
        raise NotFoundError(f"player {cid} has no session and is in no location")
    if dry_run:
        return KickResult(cid, True, exists, in_locations, worker_id, 0)
    if isinstance(r, RedisCluster):
        # the keys span slots: one transaction per slot, the session's last (a reader sees
        # at worst a session without presence for a moment, never presence without one)
        commands: list[tuple[str, ...]] = [
            ("SREM", keys.presence_key(loc), str(cid)) for loc in in_locations
        ]
        if worker_id:
            commands.append(("HDEL", keys.worker_connections_key(worker_id), str(cid)))
        commands.append(("DEL", keys.session_key(cid)))
        await transactions_per_slot(r, commands, last_key=keys.session_key(cid))
    else:
        script = r.register_script(scripts.KICK_PLAYER)
        key_list = [keys.session_key(cid)]
        key_list += [keys.presence_key(loc) for loc in in_locations]
        if worker_id:
            key_list.append(keys.worker_connections_key(worker_id))
        await script(
            keys=key_list, args=[str(cid), str(len(in_locations)), "1" if worker_id else "0"]
        )
    notice = envelopes.personal_message(
        cid,
        {"type": "kicked", "data": {"message": reason, "reason": reason}},
        msg_id=envelopes.new_msg_id(),
    )
    notified = await publish(r, notice.channel, notice.to_json(), mode)
    return KickResult(cid, False, exists, in_locations, worker_id, notified)


@dataclass
class SessionPage:
    """One page of a walk over the sessions: resume it with ``cursor`` ("0": done)."""

    rows: list[SessionSummary]
    cursor: str
    scanned: int  # keys the steps of this page examined

    @property
    def done(self) -> bool:
        return self.cursor == "0"

    def as_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "done": self.done,
            "scanned": self.scanned,
            "sessions": [row.as_dict() for row in self.rows],
        }


PAGE_MAX_STEPS = 100  # SCAN steps one page may take while a name search finds little


async def page_sessions(
    r: AnyRedis,
    cursor: str = "0",
    count: int = 50,
    *,
    name: str | None = None,
    max_steps: int = PAGE_MAX_STEPS,
) -> SessionPage:
    """The next page of sessions from ``cursor``: SCAN steps of about ``count`` keys (one
    Lua call each reads the fields and TTL of the sessions it finds) until ``count`` rows
    are found, the walk ends, or ``max_steps`` steps were taken. ``name`` keeps sessions
    whose username contains it (case-insensitive). A page may hold a few more than
    ``count`` rows: a step's rows are never dropped, since the cursor has moved past them."""
    from echoes_ops.contract import codec
    from echoes_ops.contract.session import SESSION_FIELDS, Session

    script = r.register_script(scripts.SCAN_HASH_FIELDS)
    needle = name.casefold() if name else None
    fields = tuple(SESSION_FIELDS)
    width = 2 + len(fields)
    now = time.time()
    found: list[SessionRow] = []
    scanned = 0
    for _ in range(max(1, max_steps)):
        reply = await script(
            args=[
                cursor,
                keys.SESSION_PATTERN,
                max(count, 10),
                len(fields),
                *fields,
                "all",
                repr(codec.MIN_PLAUSIBLE_EPOCH),
                "0",
            ]
        )
        cursor = str(reply[0])
        scanned += int(reply[1])
        items = reply[3:]  # after the cursor, the count and the step's duration
        for start in range(0, len(items), width):
            key, ttl, *values = items[start : start + width]
            cid = keys.parse_session_key(key)
            mapping = {f: v for f, v in zip(fields, values, strict=True) if v is not None}
            if cid is None or not mapping:
                continue
            row = SessionRow(Session.decode(cid, mapping, now=now), int(ttl))
            if needle is None or needle in (row.session.username or "").casefold():
                found.append(row)
        if cursor == "0" or len(found) >= count:
            break
    names = await location_names(r, sorted({row.session.location_id or "" for row in found} - {""}))
    rows = [_summary(row, now, None, names) for row in found]
    rows.sort(key=lambda s: s.character_id)
    return SessionPage(rows=rows, cursor=cursor, scanned=scanned)
