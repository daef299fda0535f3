"""The data source's own event loop, in a background thread.

A :class:`~echoes_ops.tui.source.RedisSource` runs its I/O there, off the caller's loop;
results come back as ordinary awaitables. A thread still shares the process's GIL and
garbage collector: decoding 100,000 sessions on it stalled a screen in the same process for
up to 300 ms (docs/benchmarks.md), so the dashboard runs its source in a process of its own
(:mod:`echoes_ops.tui.poller`, which swaps this runner for an inline one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
POLL_STREAM = 0.05  # seconds between two looks at a stream's buffer


class BackgroundLoop:
    def __init__(self, name: str = "echoes-ops-source") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the background loop and await its result here."""
        loop = self.loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a loop
            running = None
        if running is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def stream(self, make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate ``make()`` on the background loop; yield its items here."""
        items: deque[T] = deque()
        ended: list[BaseException | None] = []

        async def pump() -> None:
            try:
                async for item in make():
                    items.append(item)
            except asyncio.CancelledError:
                ended.append(None)
                raise
            except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                ended.append(exc)
                return
            ended.append(None)

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop())
        try:
            while True:
                while items:
                    yield items.popleft()
                if ended:
                    while items:
                        yield items.popleft()
                    if ended[0] is not None:
                        raise ended[0]
                    return
                await asyncio.sleep(POLL_STREAM)
        finally:
            future.cancel()

    async def cancel_all(self) -> None:
        """Cancel every other task of the background loop (streams) and wait for them; run
        on the background loop before :meth:`stop`."""
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.close()


class HasRunner(Protocol):
    runner: BackgroundLoop


S = TypeVar("S", bound=HasRunner)


def offloaded(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make an async method of a source run on the source's background loop."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.runner.run(method(self, *args, **kwargs))

    return wrapper
