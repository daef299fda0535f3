"""The dashboard's :class:`~echoes_ops.tui.source.Source`: a
:class:`~echoes_ops.tui.source.RedisSource` run in a poller process of its own.

Same calls, same typed results, same errors; only where the work runs differs. The screen's
process keeps its GIL and garbage collector to itself, so a census or drift pass over
100,000 sessions, or the live tail's 1,000 msg/s, never delays a key press.

Its calls are not written out here: every name in :data:`~echoes_ops.tui.source.CALLS`
becomes a proxy that sends the call to the poller (a write is refused here at once when
the dashboard is read-only; the poller checks too). Only what is not a plain call is
written out: ``open`` (it may make the dashboard read-only), ``close`` and the ``tail``
stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from echoes_ops.config import Settings
from echoes_ops.errors import OpsError, RefusedError
from echoes_ops.operations.overview import WriteAccess
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.remote import PollerProcess
from echoes_ops.tui.source import CALLS


class ProcessSource:
    """A :class:`~echoes_ops.tui.source.Source` whose calls run in :mod:`echoes_ops.tui.poller`."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        target = settings.redis_target()
        self.display = target.display
        self.environment = settings.environment
        self.operator = settings.operator_name()
        self.postgres = settings.database_dsn() is not None
        self.env_file = settings.env_file
        self.read_only = read_only  # --read-only, or the ACL user may not write
        self.warnings: list[str] = []
        self.poller = PollerProcess(settings)

    def clock(self) -> float:
        return time.time()

    def take_warnings(self) -> list[str]:
        out, self.warnings = self.warnings, []
        return out

    async def call(self, method: str, *args: Any) -> Any:
        """Run ``method`` (a name in CALLS) in the poller; its result, or its error raised."""
        refused_as = CALLS[method]
        if refused_as is not None and self.read_only:
            raise RefusedError(f"read-only dashboard: {refused_as} refused, nothing changed")
        kind, _, value, warnings = await self.poller.call(method, args, self.read_only)
        self.warnings += warnings
        if kind == "err":
            raise value if isinstance(value, OpsError) else OpsError(str(value))
        return value

    def __getattr__(self, name: str) -> Any:
        """The proxy for a call in CALLS (looked up only for names not defined here)."""
        if name not in CALLS:
            raise AttributeError(name)

        def proxy(*args: Any) -> Coroutine[Any, Any, Any]:
            return self.call(name, *args)

        proxy.__name__ = name
        return proxy

    async def open(self) -> WriteAccess:
        access: WriteAccess = await self.call("open")
        if not access.writable:
            self.read_only = True
        return access

    async def close(self) -> None:
        await self.poller.close()

    def tail(self, on_status: Callable[[str], None]) -> AsyncIterator[TailEvent]:
        return self.poller.stream(self.read_only, on_status)
