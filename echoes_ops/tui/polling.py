"""Periodic source calls that never stack: a poll runs in a Textual worker and posts its
message; the next run is scheduled only when the message's handler calls :meth:`done`,
so a slow Redis slows the dashboard down instead of piling up requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.message import Message
from textual.timer import Timer

from echoes_ops.errors import OpsError
from echoes_ops.tui.messages import SourceFailed


class Poll:
    def __init__(
        self,
        app: App[Any],
        name: str,
        fetch: Callable[[], Awaitable[Message]],
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.name = name
        self.fetch = fetch
        self.interval = interval
        self.clock = clock
        self.inflight = False
        self.started = False
        self.timer: Timer | None = None

    def run_now(self) -> None:
        """Start a run unless one is in flight (then its result will do)."""
        if self.inflight:
            return
        self.started = True
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        self.inflight = True
        self.app.run_worker(self._job(), group=f"poll:{self.name}", exclusive=True)

    async def _job(self) -> None:
        try:
            message = await self.fetch()
        except OpsError as exc:
            message = SourceFailed(self.name, exc, self.clock())
        self.app.post_message(message)

    def done(self, delay: float | None = None) -> None:
        """The result was handled: schedule the next run."""
        self.inflight = False
        if self.timer is not None:
            self.timer.stop()
        self.timer = self.app.set_timer(self.interval if delay is None else delay, self.run_now)
