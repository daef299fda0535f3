"""Counting the tier on the server: one pass over the keyspace in Lua SCAN steps that
judges each session's heartbeat inside Redis and returns ids, not sessions.

The dashboard's census runs every 10 s. Shipping and decoding 100,000 sessions for a count
cost the client about a second of CPU a pass; this moves a few kilobytes per step and
leaves the client a set update per step. The counts are those of
:func:`~echoes_ops.operations.tiermap.census` (the same key parsing, the same heartbeat
rules as :func:`~echoes_ops.contract.codec.decode_epoch`, a key SCAN returns twice counted
once, its last reading deciding), as of the start of the pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from echoes_ops.client.budget import TARGET_S, StepBudget, node_walk
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.walk import PrimaryWalk, keys_in_slots, walk_primaries
from echoes_ops.contract import codec, keys, scripts

COUNT_STEP: Final = 200  # keys per Lua SCAN step (about 0.3 ms of server time each)


@dataclass
class TierCount:
    """What one counting pass found (ids are canonical decimal text)."""

    scanned: int = 0
    sessions: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)  # heartbeat known and too old
    unknown: set[str] = field(default_factory=set)  # heartbeat missing or not epoch seconds
    presence: dict[str, int] = field(default_factory=dict)  # location id -> members
    lock_keys: set[str] = field(default_factory=set)
    worker_metas: set[str] = field(default_factory=set)
    worker_connections: set[str] = field(default_factory=set)

    def add_sessions(self, fresh: list[str], stale: list[str], unknown: list[str]) -> None:
        """One step's sessions; a session SCAN returns again is judged by its last reading."""
        seen = fresh + stale + unknown
        if seen:
            self.sessions.update(seen)
            self.stale.difference_update(seen)
            self.unknown.difference_update(seen)
            self.stale.update(stale)
            self.unknown.update(unknown)


def _ids(text: str) -> list[str]:
    return text.split(",") if text else []


async def count_tier(
    r: AnyRedis,
    *,
    stale_after: float,
    step: int = COUNT_STEP,
    now: float | None = None,
    budget: StepBudget | None = None,
    target: float = TARGET_S,
) -> TierCount:
    """Walk the keyspace once and count sessions (stale, unknown heartbeat) and presence
        sizes; collect lock keys and worker ids. Every step is one bounded Lua call, the first of
        ``step`` keys, the next sized by ``budget`` to the server-time budget (without one, each
    node's steps aim at ``target`` seconds of server time). On a cluster every
        primary is counted in parallel and the counts merged, each key once; the keys of slots
        that moved during the walk are read again (client/walk.py)."""
    now = time.time() if now is None else now
    walk = await walk_primaries(
        r,
        lambda node: _count_node(node, stale_after, now, budget or StepBudget(step, target=target)),
    )
    out = TierCount()
    for part in walk.results:
        _merge(out, part, walk)
    moved = await keys_in_slots(r, walk)
    if moved:
        await _count_keys(r, out, moved, stale_after=stale_after, now=now)
    return out


def _merge(out: TierCount, part: TierCount, walk: PrimaryWalk[TierCount]) -> None:
    """Add one node's counts, leaving out keys of slots that moved (read again after)."""
    keep = walk.stable
    out.scanned += part.scanned
    stale = [i for i in part.stale if keep(keys.session_key(int(i)))]
    unknown = [i for i in part.unknown if keep(keys.session_key(int(i)))]
    judged = part.stale | part.unknown
    fresh = [i for i in part.sessions - judged if keep(keys.session_key(int(i)))]
    out.add_sessions(fresh, stale, unknown)
    out.presence.update({k: n for k, n in part.presence.items() if keep(keys.presence_key(k))})
    out.lock_keys.update(k for k in part.lock_keys if keep(k))
    out.worker_metas.update(w for w in part.worker_metas if keep(keys.worker_meta_key(w)))
    out.worker_connections.update(
        w for w in part.worker_connections if keep(keys.worker_connections_key(w))
    )


async def _count_keys(
    r: AnyRedis, out: TierCount, found: list[str], *, stale_after: float, now: float
) -> None:
    """Count keys one by one (the keys of slots that moved during the walk), by the same
    rules as the Lua step."""
    sessions = [(k, keys.parse_session_key(k)) for k in found]
    session_keys = [(k, cid) for k, cid in sessions if cid is not None]
    presence = [(k, keys.parse_presence_key(k)) for k in found]
    presence_keys = [(k, loc) for k, loc in presence if loc is not None]
    calls: list[tuple[object, ...]] = [("HGET", k, "last_heartbeat") for k, _ in session_keys]
    calls += [("SCARD", k) for k, _ in presence_keys]
    replies = await bulk(r, calls, raise_on_error=False)
    fresh: list[str] = []
    stale: list[str] = []
    unknown: list[str] = []
    for (_, cid), raw in zip(session_keys, replies, strict=False):
        if isinstance(raw, ResponseError):
            continue  # not a hash (WRONGTYPE): not a session, as in the Lua step
        beat = codec.decode_epoch(raw, now=now)
        bucket = unknown if beat is None else stale if now - beat > stale_after else fresh
        bucket.append(str(cid))
    out.add_sessions(fresh, stale, unknown)
    for (_, loc), n in zip(presence_keys, replies[len(session_keys) :], strict=True):
        out.presence[loc] = n if isinstance(n, int) else 0
    for key in found:
        if key.startswith(keys.LOCK_PATTERN[:-1]) and len(key) > len(keys.LOCK_PATTERN) - 1:
            out.lock_keys.add(key)
        meta = keys.parse_worker_meta_key(key)
        if meta:
            out.worker_metas.add(meta)
        conns = keys.parse_worker_connections_key(key)
        if conns:
            out.worker_connections.add(conns)


async def _count_node(node: Redis, stale_after: float, now: float, budget: StepBudget) -> TierCount:
    """One node's counts (one server, or one primary of a cluster)."""
    out = TierCount()
    tail = [
        repr(now),
        repr(stale_after),
        repr(codec.MIN_PLAUSIBLE_EPOCH),
        repr(codec.MAX_FUTURE_SKEW),
    ]

    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, size, *tail]

    async for reply in node_walk(node, scripts.TIER_COUNT_STEP, args, budget, micros_at=7):
        out.scanned += int(reply[1])
        fresh, stale, unknown = _ids(reply[2]), _ids(reply[3]), _ids(reply[4])
        odd, rows = reply[5], reply[6]
        for start in range(0, len(odd), 2):  # heartbeats the script left to the codec
            cid, raw = str(odd[start]), odd[start + 1]
            beat = codec.decode_epoch(raw, now=now)
            if beat is None:
                unknown.append(cid)
            elif now - beat > stale_after:
                stale.append(cid)
            else:
                fresh.append(cid)
        out.add_sessions(fresh, stale, unknown)
        _sort_rows(out, rows)
    return out


def _sort_rows(out: TierCount, rows: list[object]) -> None:
    for start in range(0, len(rows), 3):
        code, key, n = str(rows[start]), str(rows[start + 1]), rows[start + 2]
        if code == "p":
            loc = keys.parse_presence_key(key)
            if loc is not None:
                out.presence[loc] = int(n) if isinstance(n, int) else 0
        elif code == "l":
            out.lock_keys.add(key)
        elif code == "m":
            wid = keys.parse_worker_meta_key(key)
            if wid:
                out.worker_metas.add(wid)
        elif code == "c":
            wid = keys.parse_worker_connections_key(key)
            if wid:
                out.worker_connections.add(wid)
