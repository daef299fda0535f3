"""The dashboard's data source: the only thing that reaches Redis and PostgreSQL.

:class:`Source` is the interface the app and panels use; :class:`RedisSource` implements it
with the operations the CLI uses. The dashboard, ``dashboard --json`` included, runs it one way: in its poller process,
through :class:`~echoes_ops.tui.process_source.ProcessSource`, whose proxies and the wire
protocol are generated from :data:`CALLS`. Tests of the calls themselves and the dashboard
benchmark's first stages call a :class:`RedisSource` directly; snapshot and pilot tests use
a deterministic in-memory one.
Every method returns typed results and raises :class:`~echoes_ops.errors.OpsError` only.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from echoes_ops.client.live import translated
from echoes_ops.config import Settings
from echoes_ops.errors import NotFoundError
from echoes_ops.operations import overview
from echoes_ops.operations.audit import AuditLog, AuditRecord
from echoes_ops.operations.audit_read import AuditQuery, read_audit
from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.operations.cluster_health import cluster_health
from echoes_ops.operations.drilldown import (
    InventoryPreview,
    WorkerDetail,
    inventory_preview,
    worker_detail,
)
from echoes_ops.operations.flags import FlagStatus, LazyRedis, SetResult, flag_status
from echoes_ops.operations.flags.status import SourceValue, truth_source
from echoes_ops.operations.latency import LatencyReport, latency_report
from echoes_ops.operations.locations import LocationDetail, list_locations, show_location
from echoes_ops.operations.locks import HoldResult, LockInfo, ReleaseResult, list_locks, show_lock
from echoes_ops.operations.overview import WriteAccess
from echoes_ops.operations.reconcile import find_drift
from echoes_ops.operations.sessions import (
    KickResult,
    SessionDetail,
    SessionPage,
    page_sessions,
    show_session,
)
from echoes_ops.operations.static_data import read_version
from echoes_ops.operations.tail import Subscriptions, TailEvent, tail
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness
from echoes_ops.tui.model import (
    BroadcastDraft,
    BroadcastPlan,
    DriftView,
    Snapshot,
    TierView,
)
from echoes_ops.tui.writes import WriteActions

PAGE_SIZE = 50
TRUTH_EVERY = 5.0  # seconds between two reads of REDIS_ENABLED in PostgreSQL by the fast poll
TRUTH_FIRST_WAIT = 1.0  # how long the first poll waits for that read before showing the rest
DRIFT_STEP = 100  # keys of the first census step of the drift poll
# The polls' walks run in the background (nobody waits on a census): their steps aim at half
# the stepped walks' target, so jitter and a mis-sized step stay inside the budget (1 ms p99,
# 2 ms max). Measured: p99 2.5-3.9 -> 0.6-1.6 ms at load 5-6 (docs/benchmarks/dashboard.md).
POLL_TARGET_S = 0.00035


@dataclass(frozen=True)
class SessionView:
    detail: SessionDetail
    inventory: InventoryPreview


@dataclass(frozen=True)
class AuditView:
    source: str  # "postgresql" or "redis"
    records: list[AuditRecord] = field(default_factory=list)
    note: str = ""


class Source(Protocol):
    """What the dashboard needs from the tier."""

    display: str  # where it is connected, without secrets
    environment: str | None  # the environment's name (ECHOES_OPS_ENVIRONMENT)
    operator: str
    postgres: bool  # DATABASE_URL configured
    read_only: bool
    env_file: str | None  # the deployment's env file a flag flip also edits

    def clock(self) -> float: ...
    def take_warnings(self) -> list[str]: ...
    async def open(self) -> WriteAccess: ...
    async def close(self) -> None: ...
    async def snapshot(self) -> Snapshot: ...
    async def tier(self) -> TierView: ...
    async def drift(self) -> DriftView: ...
    async def session_page(self, query: str, cursor: str) -> SessionPage: ...
    async def session_detail(self, character_id: int) -> SessionView: ...
    async def location_detail(self, location_id: str) -> LocationDetail: ...
    async def worker_detail(self, worker_id: str) -> WorkerDetail: ...
    async def lock_detail(self, name: str) -> LockInfo: ...
    async def flag_status(self) -> FlagStatus: ...
    async def audit(self, limit: int) -> AuditView: ...
    async def latency(self, samples: int) -> LatencyReport: ...
    def tail(self, on_status: Callable[[str], None]) -> AsyncIterator[TailEvent]: ...
    async def kick(self, character_id: int, reason: str) -> KickResult: ...
    async def hold_lock(self, name: str, ttl: str, reason: str) -> HoldResult: ...
    async def release_lock(self, name: str) -> ReleaseResult: ...
    async def force_release_lock(
        self, name: str, seen_value: str, reason: str
    ) -> ReleaseResult: ...
    async def preview_broadcast(self, draft: BroadcastDraft) -> BroadcastPlan: ...
    async def send_broadcast(self, plan: BroadcastPlan) -> BroadcastResult: ...
    async def set_flag(self, value: str, reason: str) -> SetResult: ...


# The Source calls that cross to the poller, declared once: each name with the words a
# read-only dashboard refuses it with (None: a read). The poller runs only these
# (:mod:`echoes_ops.tui.poller`), ProcessSource's proxies are made from them
# (:mod:`echoes_ops.tui.process_source`), and a test holds them equal to the Protocol's
# async methods (``close`` and the ``tail`` stream have their own frames).
CALLS: Final[Mapping[str, str | None]] = {
    "open": None,
    "snapshot": None,
    "tier": None,
    "drift": None,
    "session_page": None,
    "session_detail": None,
    "location_detail": None,
    "worker_detail": None,
    "lock_detail": None,
    "flag_status": None,
    "audit": None,
    "latency": None,
    "preview_broadcast": None,
    "kick": "kick",
    "hold_lock": "lock hold",
    "release_lock": "lock release",
    "force_release_lock": "force release",
    "send_broadcast": "broadcast",
    "set_flag": "flag change",
}


class RedisSource(WriteActions):
    """A :class:`Source` over a real Redis (and PostgreSQL when configured). Its calls run
    on the caller's event loop: the poller process's (:mod:`echoes_ops.tui.poller`) for
    the dashboard; a test's or a benchmark's when they time the calls themselves."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        super().__init__(settings, read_only=read_only)
        self._truth: SourceValue | None = None  # REDIS_ENABLED in PostgreSQL, last read
        self._truth_at = -math.inf
        self._truth_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._truth_task is not None:
            self._truth_task.cancel()
            await asyncio.gather(self._truth_task, return_exceptions=True)
        await super().close()

    async def _read_truth(self) -> None:
        self._truth = await truth_source(self.dsn, timeouts=self.settings.flag_timeouts())

    async def _flag(self, live: dict[str, WorkerLiveness]) -> FlagStatus:
        """REDIS_ENABLED as the header shows it: the source of truth (PostgreSQL, read in
        the background at most every TRUTH_EVERY s, so a slow or dead PostgreSQL never
        delays the poll; the first poll waits up to TRUTH_FIRST_WAIT for it), the env file,
        the Redis mirror, and the modes of the workers this poll read."""
        now = self.clock()
        idle = self._truth_task is None or self._truth_task.done()
        if idle and now - self._truth_at >= TRUTH_EVERY:
            self._truth_at = now
            self._truth_task = asyncio.ensure_future(self._read_truth())
        if self._truth is None and self._truth_task is not None:
            await asyncio.wait({self._truth_task}, timeout=TRUTH_FIRST_WAIT)
        truth = self._truth or SourceValue(
            "postgresql", "reading", None, None, "PostgreSQL has not answered yet"
        )
        return await flag_status(
            self.dsn,
            env_file=self.env_file,
            redis=LazyRedis.of(self.redis()),
            liveness=live,
            truth=truth,
        )

    async def open(self) -> WriteAccess:
        """Connect and find out whether this user may write (a replica or an ACL user
        without write permissions makes the dashboard read-only)."""
        with translated(self.display):
            await self.redis().ping()
            access = await overview.write_access(self.redis())
        if not access.writable:
            self.read_only = True
        return access

    async def snapshot(self) -> Snapshot:
        """The fast poll. Workers and locks are read by name: those the last census found
        plus live workers (a connected client named after a worker with a meta key) and
        locks taken here, so no refresh walks the keyspace; the very first one does."""
        started = time.perf_counter()
        r = self.redis()
        with translated(self.display):
            counters = await overview.read_counters(r)
            gamedata = await read_version(r)
            if self.known_workers is None:
                live = await worker_liveness(r)
                self.known_workers = set(live)
            else:
                ids = self.known_workers | await overview.live_worker_ids(r)
                live = await worker_liveness(r, ids)
            locations = await list_locations(r)
            held = await self._locks()
            flag = await self._flag(live)
            cluster = await cluster_health(r)  # each refresh: a node down shows at the next
        workers = [w for w in live.values() if w.meta or w.connections or w.client_connected]
        return Snapshot(
            taken_at=self.clock(),
            counters=counters,
            gamedata=gamedata,
            flag=flag,
            workers=sorted(workers, key=lambda w: (not w.alive, w.worker_id)),
            locations=locations,
            locks=held,
            elapsed_s=time.perf_counter() - started,
            cluster=cluster,
        )

    async def _locks(self) -> list[LockInfo]:
        if self.known_locks is None:
            found = await list_locks(self.redis())
            self.known_locks = {info.name for info in found}
            return found
        out = []
        for name in sorted(self.known_locks):
            try:
                out.append(await show_lock(self.redis(), name))
            except NotFoundError:
                self.known_locks.discard(name)  # expired or released
        return out

    async def tier(self) -> TierView:
        with translated(self.display):
            summary = await overview.tier_summary(self.redis(), target=POLL_TARGET_S)
        self.known_workers = set(summary.worker_ids)
        self.known_locks = set(summary.lock_names)
        return TierView(summary, self.clock())

    async def drift(self) -> DriftView:
        started = time.perf_counter()
        with translated(self.display):
            plan = await find_drift(self.redis(), step=DRIFT_STEP, target=POLL_TARGET_S)
        counts = {kind: report.found for kind, report in plan.report.kinds.items()}
        return DriftView(counts, self.clock(), time.perf_counter() - started)

    async def session_page(self, query: str, cursor: str) -> SessionPage:
        """Sessions by id (digits: that one session), by name (a substring), or all;
        paged through SCAN from ``cursor``."""
        text = query.strip()
        with translated(self.display):
            if text.isascii() and text.isdigit():
                try:
                    found = await show_session(self.redis(), int(text))
                except NotFoundError:
                    return SessionPage([], "0", 1)
                return SessionPage([found.summary], "0", 1)
            return await page_sessions(self.redis(), cursor, PAGE_SIZE, name=text or None)

    async def session_detail(self, character_id: int) -> SessionView:
        with translated(self.display):
            detail = await show_session(self.redis(), character_id)
            inventory = await inventory_preview(self.redis(), character_id)
        return SessionView(detail, inventory)

    async def location_detail(self, location_id: str) -> LocationDetail:
        with translated(self.display):
            return await show_location(self.redis(), location_id)

    async def worker_detail(self, worker_id: str) -> WorkerDetail:
        with translated(self.display):
            return await worker_detail(self.redis(), worker_id)

    async def lock_detail(self, name: str) -> LockInfo:
        with translated(self.display):
            return await show_lock(self.redis(), name)

    async def flag_status(self) -> FlagStatus:
        """REDIS_ENABLED in PostgreSQL, the env file and the Redis mirror, and what each
        live worker applied. Unreadable sources are reported in the result, not raised."""
        async with LazyRedis(self.target) as lazy:
            return await flag_status(
                self.dsn,
                env_file=self.env_file,
                redis=lazy,
                timeouts=self.settings.flag_timeouts(),
            )

    async def audit(self, limit: int) -> AuditView:
        log = AuditLog(
            operator=self.operator,
            redis=self.redis(),
            database_url=self.dsn,
            pg_timeouts=self.settings.pg_timeouts(),
        )
        with translated(self.display):
            read = await read_audit(log, AuditQuery(limit=limit))
        note = read.note or (
            "" if self.postgres else "PostgreSQL not configured: the Redis stream's records"
        )
        return AuditView(read.source, read.records, note)

    async def latency(self, samples: int) -> LatencyReport:
        """SLOWLOG, the latency monitor and ``samples`` PING round trips (from the poller)."""
        with translated(self.display):
            return await latency_report(self.redis(), samples=samples)

    def tail(self, on_status: Callable[[str], None]) -> AsyncIterator[TailEvent]:
        """Decoded messages on the four channel families, reconnecting by itself."""

        def subscribed(subs: Subscriptions) -> None:
            on_status("listening on " + subs.describe())

        def lost(error: str) -> None:
            on_status(f"connection lost ({error}); reconnecting")

        return tail(self.target, on_subscribed=subscribed, on_disconnected=lost)
