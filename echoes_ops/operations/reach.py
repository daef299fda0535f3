"""Who a broadcast reaches, in players: the players it is for and the game connections
behind them, not the Redis clients subscribed to its channel (those are the workers).

- global: every session online, and every entry of the workers' connection hashes;
- location: the location's presence set, and those of its players connected to a worker;
- player: the player (1 when a session exists), and their connection entry.

Reads are bounded: the session count walks the keyspace in the tier count's Lua steps
(:mod:`echoes_ops.operations.tiercount`), connection hashes are counted with HLEN, and a
location's members are read with SSCAN and pipelined lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import envelopes, keys
from echoes_ops.operations.tiercount import count_tier
from echoes_ops.operations.tiermap import set_members


@dataclass(frozen=True)
class Reach:
    players: int  # the players the message is for
    connections: int  # their entries in the workers' connection hashes

    def as_dict(self) -> dict[str, int]:
        return {"players": self.players, "connections": self.connections}

    def words(self) -> str:
        """``996 players (1,000 connections)``."""
        players = f"{self.players:,} player{'' if self.players == 1 else 's'}"
        return f"{players} ({self.connections:,} connection{'' if self.connections == 1 else 's'})"


async def reach(r: AnyRedis, envelope: envelopes.Envelope) -> Reach:
    """The players ``envelope`` is for, and the connections behind them."""
    if envelope.type == envelopes.GLOBAL_BROADCAST:
        counted = await count_tier(r, stale_after=keys.SESSION_TTL)  # every session counts
        hashes = [keys.worker_connections_key(w) for w in sorted(counted.worker_connections)]
        sizes = await bulk(r, [("HLEN", key) for key in hashes])
        return Reach(len(counted.sessions), sum(int(n) for n in sizes))
    if envelope.type == envelopes.LOCATION_UPDATE and envelope.location_id is not None:
        members = await set_members(r, keys.presence_key(envelope.location_id))
        ids = sorted(int(m) for m in members if m.isascii() and m.isdigit())
        return Reach(len(ids), await _connected(r, ids))
    if envelope.type == envelopes.PERSONAL_MESSAGE and envelope.player_id is not None:
        cid = envelope.player_id
        online = int(await r.exists(keys.session_key(cid)))
        return Reach(online, await _connected(r, [cid]) if online else 0)
    return Reach(0, 0)


async def _connected(r: AnyRedis, ids: list[int]) -> int:
    """How many of ``ids`` have an entry in the connections hash of their session's worker."""
    if not ids:
        return 0
    owners: list[Any] = await bulk(
        r, [("HGET", keys.session_key(cid), "worker_id") for cid in ids], raise_on_error=False
    )
    pairs = [(cid, w) for cid, w in zip(ids, owners, strict=True) if isinstance(w, str) and w]
    if not pairs:
        return 0
    found = await bulk(
        r,
        [("HEXISTS", keys.worker_connections_key(w), str(cid)) for cid, w in pairs],
        raise_on_error=False,
    )
    return sum(1 for f in found if f == 1)
