"""The tier client: what a game worker does to Redis, on the contract, corrected per docs/design.md.

It holds what the simulated workers (:mod:`echoes_ops.runtime.worker`) do: heartbeats, moves,
connecting and disconnecting players, the inventory cache, publishing and the spawn lock;
calls nobody made were removed rather than kept untested. Differences from the plan:

- heartbeats are wall-clock epoch seconds (decision 2);
- a session write and its TTL, an inventory replace and its TTL, and a move between location
  sets (with the session's location) are each one MULTI/EXEC (decision 3);
- connecting and disconnecting a player are one transaction each, awaited, never
  fire-and-forget tasks that a crash can lose;
- a heartbeat never recreates a session that was kicked or expired (Lua, compare first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from echoes_ops.contract import codec, envelopes, keys, scripts
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode, check_mode
from echoes_ops.contract.session import Session
from echoes_ops.errors import DecodeError
from echoes_ops.primitives.lease import Lease, try_lease
from echoes_ops.primitives.publish import publish

CONNECTED = "connected"


def _fields(values: dict[str, str]) -> Any:
    """redis-py's hset(mapping=) is typed with invariant key/value unions; ours are str."""
    return values


class Tier:
    """One worker's view of the tier. ``r`` must decode responses (str)."""

    def __init__(
        self,
        r: Redis,
        worker_id: str,
        *,
        clock: Callable[[], float] = time.time,
        pubsub_mode: PubSubMode = DEFAULT_MODE,
    ) -> None:
        self.r = r
        self.worker_id = check_name(worker_id, "worker id")
        self.clock = clock
        self.pubsub_mode = check_mode(pubsub_mode)
        self._touch = r.register_script(scripts.TOUCH_SESSION)

    # -- sessions ---------------------------------------------------------------------

    async def touch_session(
        self,
        character_id: int,
        fields: Mapping[str, Any] | None = None,
        *,
        ttl: int = keys.SESSION_TTL,
    ) -> bool:
        """Heartbeat: update ``fields`` and ``last_heartbeat``, refresh the TTL. Returns
        False (and writes nothing) when the session no longer exists."""
        values = codec.encode_mapping(dict(fields or {}))
        values["last_heartbeat"] = codec.encode_value(self.clock()) or ""
        argv: list[str] = [str(ttl)]
        for name, value in values.items():
            argv.extend((name, value))
        done = await self._touch(keys=[keys.session_key(character_id)], args=argv)
        return bool(done)

    async def read_session(self, character_id: int) -> Session | None:
        cid = check_character_id(character_id)
        raw = await self.r.hgetall(keys.session_key(cid))
        return Session.decode(cid, raw, now=self.clock()) if raw else None

    def _stamped(self, session: Session) -> dict[str, str]:
        fields = session.encode()
        fields["worker_id"] = self.worker_id
        fields["last_heartbeat"] = codec.encode_value(self.clock()) or ""
        return fields

    # -- presence ---------------------------------------------------------------------

    async def move(
        self,
        character_id: int,
        from_location: str,
        to_location: str,
        fields: Mapping[str, Any] | None = None,
        *,
        ttl: int = keys.SESSION_TTL,
    ) -> None:
        """Move a player between location sets and update the session's location, in one
        transaction (a crash cannot leave the player in both sets or in neither)."""
        cid = check_character_id(character_id)
        values = codec.encode_mapping({**(fields or {}), "location_id": to_location})
        values["last_movement_time"] = values.get("last_movement_time") or repr(self.clock())
        values["last_heartbeat"] = repr(self.clock())
        session = keys.session_key(cid)
        pipe = self.r.pipeline(transaction=True)
        pipe.srem(keys.presence_key(from_location), cid)
        pipe.sadd(keys.presence_key(to_location), cid)
        pipe.hset(session, mapping=_fields(values))
        pipe.expire(session, ttl)
        await pipe.execute()

    async def members(self, location_id: str) -> set[int]:
        raw = await self.r.smembers(keys.presence_key(location_id))
        return {int(m) for m in raw if str(m).isdigit()}

    # -- connect / disconnect (the ConnectionManager's Redis side) ----------------------

    async def connect_player(self, session: Session, *, ttl: int = keys.SESSION_TTL) -> None:
        """Session (with TTL), presence and this worker's connection entry: one transaction."""
        if session.location_id is None:
            raise DecodeError("a connecting player needs a location_id")
        cid = session.character_id
        key = keys.session_key(cid)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=_fields(self._stamped(session)))
        pipe.expire(key, ttl)
        pipe.sadd(keys.presence_key(session.location_id), cid)
        pipe.hset(keys.worker_connections_key(self.worker_id), str(cid), CONNECTED)
        await pipe.execute()

    async def disconnect_player(self, character_id: int, location_id: str | None) -> None:
        """Remove session, presence and connection entry in one transaction."""
        cid = check_character_id(character_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.session_key(cid))
        if location_id is not None:
            pipe.srem(keys.presence_key(location_id), cid)
        pipe.hdel(keys.worker_connections_key(self.worker_id), str(cid))
        await pipe.execute()

    # -- inventory cache ------------------------------------------------------------------

    async def replace_inventory(
        self,
        character_id: int,
        rows: Iterable[Mapping[str, Any]],
        *,
        ttl: int = keys.INVENTORY_TTL,
    ) -> None:
        """Replace the cached inventory and set its TTL in one transaction."""
        key = keys.inventory_key(character_id)
        encoded = [codec.encode_json(dict(row)) for row in rows]
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        if encoded:
            pipe.rpush(key, *encoded)
            pipe.expire(key, ttl)
        await pipe.execute()

    async def read_inventory(self, character_id: int) -> list[dict[str, Any]] | None:
        rows = await self.r.lrange(keys.inventory_key(character_id), 0, -1)
        if not rows:
            return None
        decoded = []
        for row in rows:
            try:
                value = json.loads(row)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                decoded.append(value)
        return decoded

    # -- publishing -------------------------------------------------------------------

    async def publish(self, envelope: envelopes.Envelope) -> int:
        """Publish in this tier's pub/sub mode (SPUBLISH for location and player channels
        when sharded); returns how many subscribers received it (Redis's count)."""
        return await publish(self.r, envelope.channel, envelope.to_json(), self.pubsub_mode)

    async def publish_global(self, payload: Mapping[str, Any], **kw: Any) -> int:
        return await self.publish(envelopes.global_broadcast(payload, **kw))

    async def publish_location(
        self,
        location_id: str,
        payload: Mapping[str, Any],
        exclude_player_id: int | None = None,
        **kw: Any,
    ) -> int:
        return await self.publish(
            envelopes.location_update(
                location_id, payload, exclude_player_id=exclude_player_id, **kw
            )
        )

    async def publish_personal(
        self, character_id: int, payload: Mapping[str, Any], **kw: Any
    ) -> int:
        return await self.publish(envelopes.personal_message(character_id, payload, **kw))

    async def publish_worker_event(self, kind: str, **extra: Any) -> int:
        if kind not in envelopes.WORKER_EVENTS:
            raise DecodeError(f"unknown worker event {kind!r}")
        return await self.publish(envelopes.worker_event(kind, self.worker_id, **extra))  # type: ignore[arg-type]

    # -- locks ------------------------------------------------------------------------

    async def try_lock(self, name: str, ttl: float) -> Lease | None:
        """Take ``lock:<name>`` for this worker if free; see :class:`Lease`."""
        return await try_lease(self.r, name, self.worker_id, ttl)
