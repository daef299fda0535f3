"""A held distributed lock that renews itself while the work runs.

    lease = await try_lease(r, "spawn_manager", owner="worker-3", ttl=60)
    if lease is None:
        return                      # someone else (a worker or an operator) holds it
    async with lease:               # renews every ttl/3 in the background
        await do_work(lease)        # long steps may call lease.check()

If a renewal finds the token gone (the TTL ran out during a stall, or an operator
force-released it), the lease is lost: ``lease.lost`` is set, ``check()`` raises
:class:`LockLostError`, and leaving the ``async with`` block raises it too, so the work
never finishes silently believing it was exclusive. Release is compare-and-delete: a lost
lease never deletes the next owner's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

from redis.exceptions import ClusterDownError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.errors import OpsError
from echoes_ops.primitives import lock


class LockLostError(OpsError):
    """The lock expired or was taken away while the work believed it held it."""


# A cluster answers CLUSTERDOWN to every node while a failed primary's replica is promoted (a
# few seconds): the release is retried that long, not left to the TTL, so that a run cut off
# by a failover does not leave its own lock in the next run's way
RELEASE_RETRY_S = 5.0
RELEASE_RETRY_EVERY = 0.25


class Lease:
    def __init__(
        self, r: AnyRedis, handle: lock.LockHandle, ttl: float, *, info_key: str | None = None
    ) -> None:
        self.r = r
        self.handle = handle
        self.ttl = ttl
        self.info_key = info_key  # a hash describing the holder, kept alive with the lock
        self.renew_every = max(0.05, ttl / 3)
        self.lost = asyncio.Event()
        self.renewals = 0
        self.release_retry_s = RELEASE_RETRY_S
        self._expires_at = time.monotonic() + ttl
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def token(self) -> str:
        return self.handle.token

    def check(self) -> None:
        if self.lost.is_set():
            raise LockLostError(f"lost lock:{self.name} while holding it")

    async def _renew_forever(self) -> None:
        while not self.lost.is_set():
            await asyncio.sleep(self.renew_every)
            try:
                extended = await lock.extend(self.r, self.handle.key, self.handle.token, self.ttl)
            except (RedisError, OSError):
                # cannot tell yet (the connection dropped, or the server refused: a replica
                # during a failover, an ACL change); the lock is ours at most until its TTL
                # runs out
                if time.monotonic() >= self._expires_at:
                    self.lost.set()
                continue
            if extended:
                self.renewals += 1
                self._expires_at = time.monotonic() + self.ttl
                if self.info_key is not None:
                    with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                        await lock.extend_info(self.r, self.info_key, self.token, self.ttl)
            else:
                self.lost.set()

    async def __aenter__(self) -> Lease:
        self._task = asyncio.create_task(self._renew_forever(), name=f"renew lock:{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        released = False
        # if Redis is unreachable the lock simply expires at its TTL; when the work already
        # failed, no release error may replace the work's own (a cluster still down after a
        # failover answers CLUSTERDOWN: the operator must read what the work says it left)
        unreleased = (RedisConnectionError, RedisTimeoutError, OSError)
        with contextlib.suppress(*unreleased, *((RedisError,) if exc_type else ())):
            released = await self._release()
            if released and self.info_key is not None:
                await lock.drop_info(self.r, self.info_key, self.token)
        if exc_type is None and (self.lost.is_set() or not released):
            if not released and not self.lost.is_set():
                # it vanished between the last renewal and the release
                self.lost.set()
            raise LockLostError(f"lost lock:{self.name} before the work finished")

    async def _release(self) -> bool:
        """Compare-and-delete, retried while a cluster says it is down (a failover under
        way), for at most ``release_retry_s`` and never past the lock's own expiry."""
        give_up = min(time.monotonic() + self.release_retry_s, self._expires_at)
        while True:
            try:
                return await lock.release(self.r, self.handle.key, self.handle.token)
            except (ClusterDownError, TryAgainError):
                if time.monotonic() + RELEASE_RETRY_EVERY >= give_up:
                    raise
                await asyncio.sleep(RELEASE_RETRY_EVERY)


async def try_lease(r: AnyRedis, name: str, owner: str, ttl: float) -> Lease | None:
    handle = await lock.try_acquire(r, name, owner, ttl)
    return Lease(r, handle, ttl) if handle is not None else None
