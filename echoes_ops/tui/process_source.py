"""The dashboard's default :class:`~echoes_ops.tui.source.Source`: a
:class:`~echoes_ops.tui.source.RedisSource` run in a poller process of its own.

Same calls, same typed results, same errors; only where the work runs differs. The screen's
process keeps its GIL and garbage collector to itself, so a census or drift pass over
100,000 sessions, or the live tail's 1,000 msg/s, never delays a key press.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from echoes_ops.config import Settings
from echoes_ops.errors import OpsError, RefusedError
from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.operations.drilldown import WorkerDetail
from echoes_ops.operations.flags import FlagStatus, SetResult
from echoes_ops.operations.locations import LocationDetail
from echoes_ops.operations.locks import HoldResult, LockInfo, ReleaseResult
from echoes_ops.operations.overview import WriteAccess
from echoes_ops.operations.sessions import KickResult, SessionPage
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.model import BroadcastDraft, BroadcastPlan, DriftView, Snapshot, TierView
from echoes_ops.tui.remote import PollerProcess
from echoes_ops.tui.source import AuditView, SessionView


class ProcessSource:
    """A :class:`Source` whose calls run in :mod:`echoes_ops.tui.poller`."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        target = settings.redis_target()
        self.display = target.display
        self.operator = settings.operator_name()
        self.postgres = settings.database_dsn() is not None
        self.read_only = read_only  # --read-only, or the ACL user may not write
        self.warnings: list[str] = []
        self.poller = PollerProcess(settings)

    def clock(self) -> float:
        return time.time()

    def take_warnings(self) -> list[str]:
        out, self.warnings = self.warnings, []
        return out

    async def _call(self, method: str, *args: Any) -> Any:
        kind, _, value, warnings = await self.poller.call(method, args, self.read_only)
        self.warnings += warnings
        if kind == "err":
            raise value if isinstance(value, OpsError) else OpsError(str(value))
        return value

    def _check_writable(self, what: str) -> None:
        """Refused here at once (the poller checks too)."""
        if self.read_only:
            raise RefusedError(f"read-only dashboard: {what} refused, nothing changed")

    async def open(self) -> WriteAccess:
        access: WriteAccess = await self._call("open")
        if not access.writable:
            self.read_only = True
        return access

    async def close(self) -> None:
        await self.poller.close()

    async def snapshot(self) -> Snapshot:
        result: Snapshot = await self._call("snapshot")
        return result

    async def tier(self) -> TierView:
        result: TierView = await self._call("tier")
        return result

    async def drift(self) -> DriftView:
        result: DriftView = await self._call("drift")
        return result

    async def session_page(self, query: str, cursor: str) -> SessionPage:
        result: SessionPage = await self._call("session_page", query, cursor)
        return result

    async def session_detail(self, character_id: int) -> SessionView:
        result: SessionView = await self._call("session_detail", character_id)
        return result

    async def location_detail(self, location_id: str) -> LocationDetail:
        result: LocationDetail = await self._call("location_detail", location_id)
        return result

    async def worker_detail(self, worker_id: str) -> WorkerDetail:
        result: WorkerDetail = await self._call("worker_detail", worker_id)
        return result

    async def lock_detail(self, name: str) -> LockInfo:
        result: LockInfo = await self._call("lock_detail", name)
        return result

    async def flag_status(self) -> FlagStatus:
        result: FlagStatus = await self._call("flag_status")
        return result

    async def audit(self, limit: int) -> AuditView:
        result: AuditView = await self._call("audit", limit)
        return result

    def tail(self, on_status: Callable[[str], None]) -> AsyncIterator[TailEvent]:
        return self.poller.stream(self.read_only, on_status)

    async def kick(self, character_id: int, reason: str) -> KickResult:
        self._check_writable("kick")
        result: KickResult = await self._call("kick", character_id, reason)
        return result

    async def hold_lock(self, name: str, ttl: float, reason: str) -> HoldResult:
        self._check_writable("lock hold")
        result: HoldResult = await self._call("hold_lock", name, ttl, reason)
        return result

    async def release_lock(self, name: str) -> ReleaseResult:
        self._check_writable("lock release")
        result: ReleaseResult = await self._call("release_lock", name)
        return result

    async def force_release_lock(self, name: str, seen_value: str, reason: str) -> ReleaseResult:
        self._check_writable("force release")
        result: ReleaseResult = await self._call("force_release_lock", name, seen_value, reason)
        return result

    async def preview_broadcast(self, draft: BroadcastDraft) -> BroadcastPlan:
        result: BroadcastPlan = await self._call("preview_broadcast", draft)
        return result

    async def send_broadcast(self, plan: BroadcastPlan) -> BroadcastResult:
        self._check_writable("broadcast")
        result: BroadcastResult = await self._call("send_broadcast", plan)
        return result

    async def set_flag(self, value: str, reason: str) -> SetResult:
        self._check_writable("flag change")
        result: SetResult = await self._call("set_flag", value, reason)
        return result
