"""How a reference worker follows the ``REDIS_ENABLED`` switch without a restart.

Two paths bring a change (docs/design.md, decision 8):

- PostgreSQL, the source of truth: a dedicated connection LISTENs on the channel the
  ``echoes_ops.flags`` trigger NOTIFYs. The connection is watched (termination callback,
  and a ``SELECT 1`` when idle) and reopened with capped backoff when PostgreSQL drops it;
  after every (re)connect the current values are read again, so a change made while the
  connection was down is not missed.
- Redis, the fast path: ``config_changed`` on ``game:workers``, which the worker's own
  pub/sub listener already receives.

Both carry the change's version (see :mod:`echoes_ops.contract.flags`); whichever arrives
first is applied and the other is ignored, as is anything older than what was applied.

Switching to fallback (``false``) is immediate: from then on the worker makes no Redis
call for its players (session, presence, moves, heartbeats) and reads PostgreSQL instead
of Redis. Switching back (``true``) first writes the worker's players back to Redis
(sessions as they are now, presence moved to where they are, players who left during the
fallback released), then flips, so Redis is right from the first read; while Redis is
unreachable the worker stays in fallback and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.postgres import CONNECT_TIMEOUT, connect_postgres
from echoes_ops.contract import envelopes, keys, scripts
from echoes_ops.contract import flags as contract
from echoes_ops.contract.flags import FlagUpdate
from echoes_ops.errors import DecodeError, PostgresError
from echoes_ops.runtime.fallback import PostgresReader
from echoes_ops.runtime.state import Connection, WorkerOptions, WorkerStats
from echoes_ops.runtime.tier import Tier


class FlagHost(Protocol):
    """What :class:`WorkerFlags` needs of its worker (the reference
    :class:`~echoes_ops.runtime.worker.Worker`), so this module does not import it back."""

    worker_id: str
    r: AnyRedis
    options: WorkerOptions
    stats: WorkerStats
    connections: dict[int, Connection]
    tier: Tier
    mode: str

    async def _register(self) -> None:
        """Write the worker's meta hash (its mode and flag fields) now."""


_PG_ERRORS = (PostgresError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_REDIS_ERRORS = (RedisError, RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

READ_FLAGS_SQL = (
    "SELECT name, value, updated_by, extract(epoch FROM updated_at) AS at FROM echoes_ops.flags"
)
RESYNC_ROUNDS = 5


async def read_flags(conn: Any) -> list[FlagUpdate]:
    """Every flag row in PostgreSQL (none when the table has not been migrated yet)."""
    try:
        rows = await conn.fetch(READ_FLAGS_SQL, timeout=CONNECT_TIMEOUT)
    except asyncpg.UndefinedTableError:
        return []
    return [
        FlagUpdate(
            name=row["name"],
            value=row["value"],
            version=contract.version_from_epoch(row["at"]),
            updated_by=row["updated_by"],
            source="postgresql",
        )
        for row in rows
    ]


async def read_mirror(r: AnyRedis) -> list[FlagUpdate]:
    """The known flags as mirrored in Redis (``echoes:flags``)."""
    out = []
    for name in contract.KNOWN_FLAGS:
        value, version, updated_by = await r.hmget(
            keys.FLAGS_KEY,
            [name, contract.mirror_version_field(name), contract.mirror_updated_by_field(name)],
        )
        if value is not None:
            out.append(
                FlagUpdate(
                    name,
                    str(value),
                    str(version) if version else None,
                    str(updated_by) if updated_by else None,
                    source="redis",
                )
            )
    return out


class FlagsListener:
    """LISTEN for flag changes on a dedicated PostgreSQL connection, forever, reconnecting."""

    def __init__(
        self,
        dsn: str,
        on_update: Callable[[FlagUpdate], object],
        *,
        max_backoff: float = 2.0,
        keepalive: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.on_update = on_update
        self.max_backoff = max_backoff
        self.keepalive = keepalive
        self.connected = asyncio.Event()
        self.connections = 0
        self.notifications = 0
        self.undecodable = 0
        self.last_error: str | None = None
        self.backend_pid: int | None = None

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    async def run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._session()
                backoff = 0.05
            except _PG_ERRORS as exc:
                self.last_error = str(exc) or type(exc).__name__
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff, backoff * 2)

    async def _session(self) -> None:
        """One connection's life: LISTEN, read the current values, then apply each
        notification until the connection is lost."""
        conn = await connect_postgres(self.dsn)
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            queue.put_nowait(payload)

        def on_lost(_conn: Any) -> None:
            queue.put_nowait(None)

        conn.add_termination_listener(on_lost)
        try:
            await conn.add_listener(contract.PG_CHANNEL, on_notify)
            self.backend_pid = conn.get_server_pid()
            for update in await read_flags(conn):
                self.on_update(update)
            self.connections += 1
            self.connected.set()
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=self.keepalive)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=self.keepalive)
                    continue
                if payload is None:
                    self.last_error = "connection to PostgreSQL lost"
                    return
                try:
                    update = contract.decode_notify(payload)
                except DecodeError:
                    self.undecodable += 1
                    continue
                self.notifications += 1
                self.on_update(update)
        finally:
            if not conn.is_closed():
                conn.terminate()


class WorkerFlags:
    """A worker's flag state: the applied ``REDIS_ENABLED`` value, where it came from, the
    PostgreSQL listener and reader, and the switch back to Redis."""

    def __init__(self, worker: FlagHost) -> None:
        self.worker = worker
        self.redis_enabled = True
        self.version: str | None = None
        self.source = "default"
        self.applied_at: float | None = None
        self.target: FlagUpdate | None = None  # the newest accepted update
        self.history: deque[tuple[float, bool, str]] = deque(maxlen=100)
        self.departed: dict[int, str | None] = {}  # left during fallback: release on return
        self.last_error: str | None = None
        dsn = worker.options.database_url
        self.listener = FlagsListener(dsn, self.apply) if dsn else None
        self.reader = (
            PostgresReader(
                dsn,
                player_query=worker.options.player_query,
                inventory_query=worker.options.inventory_query,
            )
            if dsn
            else None
        )
        self._release = worker.r.register_script(scripts.RELEASE_PLAYER_OF_WORKER)
        self._returning: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def mode(self) -> str:
        return contract.MODE_REDIS if self.redis_enabled else contract.MODE_FALLBACK

    # -- lifecycle ------------------------------------------------------------------------

    async def load(self) -> None:
        """The value at start: PostgreSQL, else the Redis mirror, else the default."""
        found: FlagUpdate | None = None
        pg_answered = False
        if self.worker.options.database_url:
            try:
                conn = await connect_postgres(self.worker.options.database_url)
                try:
                    rows = await read_flags(conn)
                finally:
                    conn.terminate()
                pg_answered = True
                found = next((u for u in rows if u.name == contract.REDIS_ENABLED), None)
            except _PG_ERRORS as exc:
                self.last_error = str(exc) or type(exc).__name__
        if found is None and not pg_answered:
            try:
                mirror = await read_mirror(self.worker.r)
                found = next((u for u in mirror if u.name == contract.REDIS_ENABLED), None)
            except _REDIS_ERRORS as exc:
                self.last_error = str(exc) or type(exc).__name__
        if found is None:
            spec = contract.KNOWN_FLAGS[contract.REDIS_ENABLED]
            found = FlagUpdate(spec.name, spec.default, None, None, source="default")
        enabled = contract.as_bool(found.value)
        self.target = found
        # nothing of this worker is in Redis yet: no resync needed either way
        self._set(enabled if enabled is not None else True, found, publish_meta=False)

    def start(self) -> None:
        if self.listener is not None:
            self._spawn(self.listener.run(), "flags listener")

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *_REDIS_ERRORS, *_PG_ERRORS):
                await task
        if self.reader is not None:
            await self.reader.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.worker.worker_id} {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- applying changes -----------------------------------------------------------------

    def on_config_changed(self, envelope: envelopes.Envelope) -> None:
        """The Redis fast path: a ``config_changed`` message on ``game:workers``."""
        flag, value, version = (envelope.extra.get(k) for k in ("flag", "value", "version"))
        if not isinstance(flag, str) or not isinstance(value, str):
            self.worker.stats.flag_updates_ignored += 1
            return
        updated_by = envelope.extra.get("updated_by")
        self.apply(
            FlagUpdate(
                name=flag,
                value=value,
                version=str(version) if isinstance(version, str | int) else None,
                updated_by=updated_by if isinstance(updated_by, str) else None,
                source="redis",
            )
        )

    def apply(self, update: FlagUpdate) -> bool:
        """Take a change from either path. Returns True when it was accepted (newer than
        anything seen); switching to fallback happens before this returns."""
        if update.name != contract.REDIS_ENABLED:
            return False
        enabled = contract.as_bool(update.value)
        newest = self.target.version if self.target is not None else self.version
        if enabled is None or (
            update.version is not None
            and newest is not None
            and contract.version_number(update.version) <= contract.version_number(newest)
        ):
            self.worker.stats.flag_updates_ignored += 1
            return False
        self.target = update
        if not enabled:
            if self._returning is not None:
                self._returning.cancel()
                self._returning = None
            self._set(False, update)
        elif self.redis_enabled:
            self._set(True, update)
        elif self._returning is None or self._returning.done():
            self._returning = self._spawn(self._return_to_redis(), "return to redis")
        return True

    def _set(self, enabled: bool, update: FlagUpdate, *, publish_meta: bool = True) -> None:
        changed = enabled != self.redis_enabled
        self.redis_enabled = enabled
        self.worker.mode = self.mode
        self.version = update.version
        self.source = update.source
        if changed or self.applied_at is None:
            self.applied_at = time.time()
            self.history.append((self.applied_at, enabled, update.source))
        if changed:
            self.worker.stats.flag_changes += 1
        if publish_meta:
            self._spawn(self._publish_meta(), "meta")

    async def _publish_meta(self) -> None:
        with contextlib.suppress(*_REDIS_ERRORS):
            await self.worker._register()

    async def _return_to_redis(self) -> None:
        backoff = 0.05
        while True:
            target = self.target
            if target is None or contract.as_bool(target.value) is not True:
                return
            try:
                await self._resync()
            except _REDIS_ERRORS as exc:
                self.last_error = str(exc) or type(exc).__name__
                await asyncio.sleep(backoff)
                backoff = min(self.worker.options.max_backoff, backoff * 2)
                continue
            target = self.target
            if target is not None and contract.as_bool(target.value) is True:
                self._returning = None
                self._set(True, target)  # no await since the last check: nothing slipped by
            return

    async def _resync(self) -> None:
        """Write this worker's players back to Redis as they are now."""
        w = self.worker
        wid = w.worker_id
        todo: set[int] | None = None  # None: every connection
        for _ in range(RESYNC_ROUNDS):
            for cid in list(self.departed):
                if cid not in w.connections:
                    await self._release(
                        keys=[keys.session_key(cid), keys.worker_connections_key(wid)],
                        args=[str(cid), wid, keys.PRESENCE_PREFIX, keys.PRESENCE_SUFFIX],
                    )
                self.departed.pop(cid, None)
            cids = [cid for cid in w.connections if todo is None or cid in todo]
            reads = w.r.pipeline(transaction=False)
            for cid in cids:
                reads.hget(keys.session_key(cid), "location_id")
            stored = await reads.execute() if cids else []
            snapshot = {cid: w.connections[cid].session for cid in cids if cid in w.connections}
            pipe = w.r.pipeline(transaction=True)
            for cid, was in zip(cids, stored, strict=True):
                session = snapshot.get(cid)
                if session is None or session.location_id is None:
                    continue
                key = keys.session_key(cid)
                if was is not None and was != session.location_id:
                    pipe.srem(keys.presence_key(was), cid)
                pipe.delete(key)
                pipe.hset(key, mapping=w.tier._stamped(session))  # type: ignore[arg-type]
                pipe.expire(key, keys.SESSION_TTL)
                pipe.sadd(keys.presence_key(session.location_id), cid)
                pipe.hset(keys.worker_connections_key(wid), str(cid), "connected")
            if snapshot:
                await pipe.execute()
            todo = {
                cid for cid, conn in w.connections.items() if snapshot.get(cid) is not conn.session
            }
            if not todo and not self.departed:
                return

    # -- what the worker reports ----------------------------------------------------------

    def meta_fields(self) -> dict[Any, Any]:  # str -> str, typed for redis-py's hset
        fields: dict[Any, Any] = {
            contract.META_REDIS_ENABLED: "true" if self.redis_enabled else "false",
            contract.META_FLAGS_SOURCE: self.source,
        }
        if self.version is not None:
            fields[contract.META_FLAGS_VERSION] = self.version
        if self.applied_at is not None:
            fields[contract.META_FLAGS_APPLIED_AT] = f"{self.applied_at:.6f}"
        return fields

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "redis_enabled": self.redis_enabled,
            "version": self.version,
            "source": self.source,
            "applied_at": self.applied_at,
            "listening": self.listener is not None and self.listener.connected.is_set(),
            "listener_reconnects": self.listener.reconnects if self.listener else 0,
            "last_error": self.last_error,
        }
