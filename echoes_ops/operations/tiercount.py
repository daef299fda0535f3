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

from echoes_ops.client.budget import StepBudget, lua_walk
from echoes_ops.client.connect import AnyRedis
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
) -> TierCount:
    """Walk the keyspace once and count sessions (stale, unknown heartbeat) and presence
    sizes; collect lock keys and worker ids. Every step is one bounded Lua call, the first of
    ``step`` keys, the next sized by ``budget`` to the server-time budget."""
    now = time.time() if now is None else now
    out = TierCount()
    tail = [
        repr(now),
        repr(stale_after),
        repr(codec.MIN_PLAUSIBLE_EPOCH),
        repr(codec.MAX_FUTURE_SKEW),
    ]

    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, size, *tail]

    steps = lua_walk(r, scripts.TIER_COUNT_STEP, args, budget or StepBudget(step), micros_at=7)
    async for reply in steps:
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
