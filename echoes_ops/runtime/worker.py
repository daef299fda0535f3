"""The reference game worker: the plan's ConnectionManager on the contract, done right.

A worker registers itself (``worker:<wid>:meta`` with a short TTL it refreshes, its Redis
client name set to its id, ``worker_join``/``worker_leave`` on ``game:workers``), holds its
players' "connections" in memory (an inbox per player stands in for the WebSocket), and
routes pub/sub messages to them. Location messages are routed from an in-memory index of
its own players per location, so a message costs no Redis round trip (the plan does an
SMEMBERS per message; ``routing="plan"`` keeps that behaviour for comparison).

It survives a Redis restart or a killed connection: the listener reconnects with capped
backoff, resubscribes, re-registers itself and any of its players whose keys were lost,
and counts the gap. A stalled server or half-open connection is detected on our own clock
(:class:`~echoes_ops.client.subscribed.SubscribedReader`: PING after ``idle_ping`` seconds
of silence, dead after ``dead_after``). A lock-guarded background task (the plan's spawn
manager) runs on at most one worker at a time; an operator holding ``lock:spawn_manager``
pauses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops import __version__
from echoes_ops.client import dropcause
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.subscribed import check_deadlines
from echoes_ops.client.subscriber import Subscriber
from echoes_ops.contract import envelopes, keys, pubsub
from echoes_ops.contract.session import Session
from echoes_ops.errors import DecodeError, PostgresError
from echoes_ops.primitives.lease import Lease, LockLostError
from echoes_ops.runtime import fallback
from echoes_ops.runtime.flags_listener import WorkerFlags
from echoes_ops.runtime.slotwrites import Transaction
from echoes_ops.runtime.state import Connection, Delivery, WorkerOptions, WorkerStats
from echoes_ops.runtime.tier import Tier

__all__ = ["SPAWN_LOCK", "Connection", "Delivery", "Worker", "WorkerOptions", "WorkerStats"]

SPAWN_LOCK = "spawn_manager"
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

SpawnTask = Callable[["Worker", Lease], Awaitable[None]]


async def announce_spawn(worker: Worker, lease: Lease) -> None:
    """The default background task: an NPC appears somewhere (a location broadcast)."""
    if not worker.options.location_ids:
        return
    location = random.choice(list(worker.options.location_ids))
    lease.check()
    await worker.tier.publish_location(
        location,
        {
            "type": "location_update",
            "data": {"message": "Something stirs nearby.", "action": "npc_spawned"},
        },
        msg_id=envelopes.new_msg_id(),
    )


class Worker:
    def __init__(
        self,
        r: AnyRedis,
        options: WorkerOptions,
        *,
        spawn_task: SpawnTask = announce_spawn,
        on_delivery: Callable[[Connection, Delivery], None] | None = None,
    ) -> None:
        check_deadlines(options.idle_ping, options.dead_after)
        self.r = r
        self.options = options
        self.worker_id = options.worker_id
        self.tier = Tier(r, options.worker_id, pubsub_mode=options.pubsub_mode)
        self.spawn_task = spawn_task
        self.on_delivery = on_delivery
        self.connections: dict[int, Connection] = {}
        self.held_locks: dict[str, str] = {}  # lock name -> value, shown in the meta
        self._by_location: dict[str, set[int]] = {}
        self.stats = WorkerStats()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._subscriber: Subscriber | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.started_at = time.time()
        self.mode = "redis"
        self._disconnected_at: float | None = None
        self._last_error: str | None = None
        self._server: dropcause.ServerMark | None = None  # tells a drop from a restart
        self.flags = WorkerFlags(self)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Register, subscribe, and start the listener, heartbeat and spawn loops."""
        await self.flags.load()
        await self._register()
        await self.tier.publish_worker_event(envelopes.WORKER_JOIN)
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"{self.worker_id} listener"),
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.worker_id} heartbeat"),
        ]
        if self.options.run_spawn_task:
            self._tasks.append(
                asyncio.create_task(self._spawn_loop(), name=f"{self.worker_id} spawn")
            )
        self.flags.start()
        await asyncio.wait_for(self.subscribed.wait(), timeout=10)

    async def stop(self) -> None:
        """Graceful shutdown: disconnect every player, remove this worker's keys, leave."""
        self._stopping.set()
        await self.flags.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, *_TRANSIENT, RedisError):
                await task
        await self._close_pubsub()
        for cid in list(self.connections):
            await self.disconnect_player(cid)
        conns = keys.worker_connections_key(self.worker_id)
        meta = keys.worker_meta_key(self.worker_id)
        tx = Transaction(self.r)  # on a cluster: the connections, then the meta
        tx.add(conns, lambda p: p.delete(conns))
        tx.add(meta, lambda p: p.delete(meta))
        await tx.execute()
        await self.tier.publish_worker_event(envelopes.WORKER_LEAVE)

    async def _register(self) -> None:
        meta = keys.worker_meta_key(self.worker_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            meta,
            mapping={
                "worker_id": self.worker_id,
                "pid": str(os.getpid()),
                "host": socket.gethostname(),
                "version": __version__,
                "started_at": f"{self.started_at:.3f}",
                "heartbeat": f"{time.time():.3f}",
                "mode": self.mode,
                pubsub.META_FIELD: self.options.pubsub_mode,
                "connections": str(len(self.connections)),
                "heartbeat_interval": f"{self.options.heartbeat_interval:g}",
                "locks": json.dumps(self.held_locks, sort_keys=True),
                **(
                    {"last_disconnect": self.stats.last_disconnect}
                    if self.stats.last_disconnect
                    else {}
                ),
                **self.flags.meta_fields(),
            },
        )
        pipe.expire(meta, self.options.meta_ttl)
        await pipe.execute()

    async def _claim(self, name: str, token: str | None) -> None:
        """Record (or drop) a held lock in the meta at once, so tools can tell a former
        holder that has not noticed it lost the lock (``locks list``)."""
        if token is None:
            self.held_locks.pop(name, None)
        else:
            self.held_locks[name] = token
        with contextlib.suppress(*_TRANSIENT):
            await self._register()

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.options.heartbeat_interval)
            with contextlib.suppress(*_TRANSIENT):
                await self._register()

    # -- players ------------------------------------------------------------------------

    async def connect_player(self, session: Session) -> Connection:
        """The plan's ConnectionManager.connect: register in Redis, subscribe, index."""
        conn = Connection(session=session, inbox=deque(maxlen=self.options.inbox_size))
        if self.redis_enabled:
            await self.tier.connect_player(session)
        else:
            self.flags.departed.pop(session.character_id, None)
        self.connections[session.character_id] = conn
        self._index(conn.character_id, None, conn.location_id)
        if self._subscriber is not None:
            channel = keys.player_channel(session.character_id)
            with contextlib.suppress(*_TRANSIENT):
                await self._subscriber.add(channel, sharded=self._sharded(channel))
        return conn

    async def disconnect_player(self, character_id: int) -> None:
        conn = self.connections.pop(character_id, None)
        if conn is None:
            return
        self._index(character_id, conn.location_id, None)
        if self._subscriber is not None:
            channel = keys.player_channel(character_id)
            with contextlib.suppress(*_TRANSIENT):
                await self._subscriber.remove(channel, sharded=self._sharded(channel))
        if self.redis_enabled:
            await self.tier.disconnect_player(character_id, conn.location_id)
        else:
            self.flags.departed[character_id] = conn.location_id

    async def move_player(self, character_id: int, to_location: str, **fields: Any) -> None:
        conn = self.connections[character_id]
        from_location = conn.location_id
        if self.redis_enabled:
            await self.tier.move(character_id, from_location, to_location, fields)
        conn.session = _with(conn.session, location_id=to_location, **fields)
        self._index(character_id, from_location, to_location)

    async def update_player(self, character_id: int, **fields: Any) -> bool:
        """Activity: write ``fields`` and the heartbeat, refresh the session's TTL."""
        conn = self.connections[character_id]
        conn.session = _with(conn.session, **fields)
        if not self.redis_enabled:
            return True
        return await self.tier.touch_session(character_id, fields)

    def _index(self, cid: int, old: str | None, new: str | None) -> None:
        if old:
            members = self._by_location.get(old)
            if members is not None:
                members.discard(cid)
                if not members:
                    del self._by_location[old]
        if new:
            self._by_location.setdefault(new, set()).add(cid)

    def local_players(self, location_id: str) -> set[int]:
        return set(self._by_location.get(location_id, ()))

    # -- the REDIS_ENABLED switch (state and listener in runtime/flags_listener.py) -------

    @property
    def redis_enabled(self) -> bool:
        """False in fallback mode: no Redis calls for players, reads from PostgreSQL."""
        return self.flags.redis_enabled

    async def read_player(self, character_id: int) -> Session | None:
        """A player's state: the Redis session in redis mode (PostgreSQL on a miss when
        configured), the game's characters table in fallback mode."""
        if self.redis_enabled:
            self.stats.redis_reads += 1
            found = await self.tier.read_session(character_id)
            if found is not None or self.flags.reader is None:
                return found
        self.stats.postgres_reads += 1
        return await self._reader().player(character_id)

    async def read_inventory(self, character_id: int) -> list[dict[str, Any]] | None:
        """A player's inventory: the Redis cache in redis mode (PostgreSQL on a miss when
        configured), the game's inventory table in fallback mode."""
        if self.redis_enabled:
            self.stats.redis_reads += 1
            cached = await self.tier.read_inventory(character_id)
            if cached is not None or self.flags.reader is None:
                return cached
        self.stats.postgres_reads += 1
        return await self._reader().inventory(character_id)

    def _reader(self) -> fallback.PostgresReader:
        if self.flags.reader is None:
            raise PostgresError(
                f"worker {self.worker_id} is in fallback mode without a database_url to read"
            )
        return self.flags.reader

    async def publish(self, envelope: envelopes.Envelope) -> int:
        """Publish through Redis; in fallback mode deliver to this worker's own players
        only (the plan's in-process connection manager). Returns the receiver count."""
        if self.redis_enabled:
            return await self.tier.publish(envelope)
        if envelope.channel not in self.channels():
            return 0
        await self._on_message(envelope.channel, envelope.to_json())
        return 1

    # -- pub/sub ------------------------------------------------------------------------

    def channels(self) -> list[str]:
        fixed = [keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL]
        fixed += [keys.location_channel(loc) for loc in self.options.location_ids]
        fixed += [keys.player_channel(cid) for cid in self.connections]
        return fixed

    def _sharded(self, channel: str) -> bool:
        return pubsub.is_sharded(channel, self.options.pubsub_mode)

    async def _listen(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                await self._subscribe()
                if self._disconnected_at is not None:
                    await self._recover()
                backoff = 0.05
                await self._pump()
            except _TRANSIENT as exc:
                self._last_error = str(exc) or type(exc).__name__
                if self._disconnected_at is None:
                    self._disconnected_at = time.time()
                    self.subscribed.clear()
                await self._close_pubsub()
                await asyncio.sleep(backoff)
                cap = min(self.options.max_backoff, self.options.resubscribe_backoff)
                backoff = min(cap, backoff * 2)

    async def _subscribe(self) -> None:
        # one connection on one server; on a cluster, one per node owning a shard channel
        # (client/subscriber.py); after a failure, the slot map is read again first
        subscriber = Subscriber(
            self.r, dead_after=self.options.dead_after, ping_after=self.options.idle_ping
        )
        self._subscriber = subscriber
        if self._disconnected_at is not None:
            await subscriber.refresh_topology()
        classic, sharded = pubsub.split_channels(self.channels(), self.options.pubsub_mode)
        await subscriber.start(channels=classic, shard=sharded)
        if self._disconnected_at is not None and self._last_error is not None:
            self.stats.last_disconnect = await dropcause.cause(
                self.r, self._server, self._last_error
            )
        self._server = await dropcause.mark(self.r)
        self.subscribed.set()

    async def _recover(self) -> None:
        """After a reconnect: count the gap, re-register, restore lost player keys."""
        assert self._disconnected_at is not None
        self.stats.reconnects += 1
        back = time.time()
        self.stats.gap_seconds += back - self._disconnected_at
        self.stats.gaps.append((self._disconnected_at, back))
        self._disconnected_at = None
        await self._register()
        cids = list(self.connections)
        pipe = self.r.pipeline(transaction=False)
        for cid in cids:
            pipe.exists(keys.session_key(cid))
        present = await pipe.execute()
        for cid, exists in zip(cids, present, strict=True):
            conn = self.connections.get(cid)
            if conn is None:
                continue
            if not exists:
                await self.tier.connect_player(conn.session)
            else:
                await self.tier.restore_presence(cid, conn.location_id)
        await self.tier.publish_worker_event(envelopes.WORKER_JOIN, rejoined=True)

    async def _pump(self) -> None:
        assert self._subscriber is not None
        subscriber = self._subscriber
        while not self._stopping.is_set():
            message = await subscriber.next()
            await self._on_message(message["channel"], message["data"])

    async def _close_pubsub(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            with contextlib.suppress(*_TRANSIENT, RedisError):
                await subscriber.aclose()

    async def _on_message(self, channel: str, data: str) -> None:
        try:
            envelope = envelopes.decode_message(channel, data)
        except DecodeError:
            self.stats.undecodable += 1
            return
        self.stats.received[envelope.type] += 1
        if envelope.type == envelopes.CONFIG_CHANGED:
            self.flags.on_config_changed(envelope)
        if envelope.msg_id is not None:
            if envelope.msg_id in self._seen:
                self.stats.duplicates += 1
                return
            self._seen[envelope.msg_id] = None
            if self.options.record_deliveries:
                self.stats.received_ids.add(envelope.msg_id)
            if len(self._seen) > self.options.seen_ids:
                self._seen.popitem(last=False)
        recipients = await self._recipients(envelope)
        received_at = time.time()  # after routing: latency is publish to inbox
        for cid in recipients:
            conn = self.connections.get(cid)
            if conn is None:
                continue
            delivery = Delivery(envelope, received_at)
            conn.inbox.append(delivery)
            conn.delivered += 1
            self.stats.delivered += 1
            if envelope.sent_at is not None and self.options.record_deliveries:
                self.stats.latencies_ms.append((received_at - envelope.sent_at) * 1000)
            if self.on_delivery is not None:
                self.on_delivery(conn, delivery)

    async def _recipients(self, envelope: envelopes.Envelope) -> set[int]:
        if envelope.type == envelopes.GLOBAL_BROADCAST:
            return set(self.connections)
        if envelope.type == envelopes.LOCATION_UPDATE and envelope.location_id:
            if self.options.routing == "plan":
                members = await self.tier.members(envelope.location_id)
                recipients = members & self.connections.keys()
            else:
                recipients = self.local_players(envelope.location_id)
            recipients.discard(envelope.exclude_player_id or 0)
            return recipients
        if envelope.type == envelopes.PERSONAL_MESSAGE and envelope.player_id is not None:
            return {envelope.player_id} if envelope.player_id in self.connections else set()
        return set()

    # -- background task ----------------------------------------------------------------

    async def _spawn_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                lease = await self.tier.try_lock(SPAWN_LOCK, self.options.spawn_lock_ttl)
                if lease is None:
                    self.stats.spawn_skipped += 1
                else:
                    try:
                        async with lease:
                            await self._claim(lease.name, lease.token)
                            await self.spawn_task(self, lease)
                    finally:
                        await self._claim(lease.name, None)
                    self.stats.spawn_runs += 1
            except LockLostError:
                self.stats.lock_lost += 1
            except _TRANSIENT:
                pass  # Redis is away; the listener reconnects, try again next period
            await asyncio.sleep(self.options.spawn_interval)


def _with(session: Session, **fields: Any) -> Session:
    from dataclasses import replace

    known = {k: v for k, v in fields.items() if k in Session.__dataclass_fields__}
    return replace(session, **known)
