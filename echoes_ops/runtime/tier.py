"""The tier client: what a game worker does to Redis, on the contract, corrected per docs/design.md.

It holds what the simulated workers (:mod:`echoes_ops.runtime.worker`) do: heartbeats, moves,
connecting and disconnecting players, the inventory cache, publishing and the spawn lock;
calls nobody made were removed rather than kept untested. Differences from the plan:

- heartbeats are wall-clock epoch seconds (decision 2);
- a session write and its TTL, an inventory replace and its TTL, and a move between location
  sets (with the session's location) are each one MULTI/EXEC (decision 3);
- connecting and disconnecting a player are one transaction each, awaited, never
  fire-and-forget tasks that a crash can lose;
- on Redis Cluster a transaction may only touch one slot, so the multi-key writes run as one
  MULTI/EXEC per slot, in a stated order (:mod:`echoes_ops.runtime.slotwrites`): a session
  and its TTL, an inventory and its TTL stay atomic (one key); a move, a connect and a
  disconnect are atomic per key and ordered so that a failure part-way leaves only drift
  ``reconcile`` repairs (each method says which);
- a heartbeat never recreates a session that was kicked or expired (Lua, compare first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import codec, envelopes, keys, scripts
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode, check_mode
from echoes_ops.contract.session import Session
from echoes_ops.errors import DecodeError
from echoes_ops.primitives.lease import Lease, try_lease
from echoes_ops.primitives.publish import publish
from echoes_ops.runtime.slotwrites import Transaction

CONNECTED = "connected"


def _fields(values: dict[str, str]) -> Any:
    """redis-py's hset(mapping=) is typed with invariant key/value unions; ours are str."""
    return values


class Tier:
    """One worker's view of the tier. ``r`` must decode responses (str)."""

    def __init__(
        self,
        r: AnyRedis,
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
        transaction (a crash cannot leave the player in both sets or in neither).

        On a cluster (three slots): the new set first, then the session (fields and TTL
        together), then the old set; a failure part-way leaves the player in both sets
        (seen by ``reconcile``), never in neither."""
        cid = check_character_id(character_id)
        values = codec.encode_mapping({**(fields or {}), "location_id": to_location})
        values["last_movement_time"] = values.get("last_movement_time") or repr(self.clock())
        values["last_heartbeat"] = repr(self.clock())
        session = keys.session_key(cid)
        old, new = keys.presence_key(from_location), keys.presence_key(to_location)
        tx = Transaction(self.r)
        tx.add(new, lambda p: p.sadd(new, cid))
        tx.add(session, lambda p: p.hset(session, mapping=_fields(values)))
        tx.add(session, lambda p: p.expire(session, ttl))
        tx.add(old, lambda p: p.srem(old, cid))
        await tx.execute()

    async def members(self, location_id: str) -> set[int]:
        raw = await self.r.smembers(keys.presence_key(location_id))
        return {int(m) for m in raw if str(m).isdigit()}

    # -- connect / disconnect (the ConnectionManager's Redis side) ----------------------

    async def connect_player(self, session: Session, *, ttl: int = keys.SESSION_TTL) -> None:
        """Session (with TTL), presence and this worker's connection entry: one transaction.

        On a cluster: the session (replaced with its TTL, atomically), then presence, then
        the connection entry; a failure part-way leaves a session without presence or
        connection entry (``reconcile`` reports it; its TTL ends it)."""
        if session.location_id is None:
            raise DecodeError("a connecting player needs a location_id")
        cid = session.character_id
        key = keys.session_key(cid)
        presence = keys.presence_key(session.location_id)
        conns = keys.worker_connections_key(self.worker_id)
        fields = _fields(self._stamped(session))
        tx = Transaction(self.r)
        tx.add(key, lambda p: p.delete(key))
        tx.add(key, lambda p: p.hset(key, mapping=fields))
        tx.add(key, lambda p: p.expire(key, ttl))
        tx.add(presence, lambda p: p.sadd(presence, cid))
        tx.add(conns, lambda p: p.hset(conns, str(cid), CONNECTED))
        await tx.execute()

    async def restore_presence(self, character_id: int, location_id: str) -> None:
        """Presence and connection entry of a player whose session survived (after a
        reconnect); per slot on a cluster (presence first)."""
        cid = check_character_id(character_id)
        presence = keys.presence_key(location_id)
        conns = keys.worker_connections_key(self.worker_id)
        tx = Transaction(self.r)
        tx.add(presence, lambda p: p.sadd(presence, cid))
        tx.add(conns, lambda p: p.hset(conns, str(cid), CONNECTED))
        await tx.execute()

    async def disconnect_player(self, character_id: int, location_id: str | None) -> None:
        """Remove session, presence and connection entry in one transaction.

        On a cluster: presence first (the player leaves the location's view), then the
        session, then the connection entry; a failure part-way leaves a session or a
        connection entry without presence (``reconcile`` reports both)."""
        cid = check_character_id(character_id)
        session = keys.session_key(cid)
        conns = keys.worker_connections_key(self.worker_id)
        tx = Transaction(self.r)
        if location_id is not None:
            presence = keys.presence_key(location_id)
            tx.add(presence, lambda p: p.srem(presence, cid))
        tx.add(session, lambda p: p.delete(session))
        tx.add(conns, lambda p: p.hdel(conns, str(cid)))
        await tx.execute()

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
