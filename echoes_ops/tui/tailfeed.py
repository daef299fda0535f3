"""The live tail's long-running worker: reads decoded pub/sub events from the source and
posts them in batches a few times a second (1,000 msg/s must not mean 1,000 screen
updates a second). Restarts itself when the first connection fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from textual.app import App

from echoes_ops.errors import OpsError
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.messages import TailBatch, TailStatus, TailStopped
from echoes_ops.tui.source import Source

FLUSH_EVERY = 0.15  # seconds between batches
MAX_BUFFER = 5000  # events held between two batches; older ones are counted, not kept
RETRY_AFTER = 2.0


class _Buffer:
    def __init__(self) -> None:
        self.events: list[TailEvent] = []
        self.dropped = 0

    async def fill(self, events: AsyncIterator[TailEvent]) -> None:
        async for event in events:
            self.events.append(event)
            if len(self.events) > MAX_BUFFER:
                del self.events[0]
                self.dropped += 1

    def take(self) -> TailBatch | None:
        if not self.events and not self.dropped:
            return None
        batch = TailBatch(self.events, self.dropped)
        self.events, self.dropped = [], 0
        return batch


async def run_tail(app: App[Any], source: Source) -> None:
    loop = asyncio.get_running_loop()

    def status(text: str) -> None:  # may be called from the source's own thread
        loop.call_soon_threadsafe(app.post_message, TailStatus(text))

    while True:
        events = source.tail(status)
        buffer = _Buffer()
        reader = asyncio.create_task(buffer.fill(events))
        try:
            while not reader.done():
                await asyncio.sleep(FLUSH_EVERY)
                batch = buffer.take()
                if batch is not None:
                    app.post_message(batch)
            reader.result()  # an OpsError ends this connection
        except OpsError as exc:
            app.post_message(TailStopped(exc))
            await asyncio.sleep(RETRY_AFTER)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, OpsError):
                await reader
            closer = getattr(events, "aclose", None)
            if closer is not None:
                with contextlib.suppress(OpsError, RuntimeError):
                    await closer()
