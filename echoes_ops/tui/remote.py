"""The dashboard's end of its poller process (:mod:`echoes_ops.tui.poller`).

:class:`PollerProcess` starts ``python -m echoes_ops.tui.poller``, sends it calls and reads
its replies on the screen's event loop (a reader task; unpickling a reply is the only work
a poll leaves here). A poller that exits fails every pending call with one
:class:`~echoes_ops.errors.OpsError` naming its exit code and last stderr line; the next
call starts a new one. :meth:`PollerProcess.close` ends it for good: it closes the poller's
stdin (the poller exits by itself), waits, kills it if it has not, and no later call starts
another (the app's workers may still be winding down).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from echoes_ops.config import Settings
from echoes_ops.errors import OpsError
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.wire import frame, read_frame

STOP_WAIT: Final = 5.0  # seconds a poller gets to exit after its stdin closes
ROOT: Final = str(Path(__file__).resolve().parents[2])  # the directory holding echoes_ops/


class PollerGone(OpsError):
    """The poller process exited (or could not start)."""


class PollerProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self.streams: dict[int, asyncio.Queue[tuple[Any, ...]]] = {}
        self.ids = itertools.count(1)
        self.stderr: deque[str] = deque(maxlen=20)
        self.tasks: list[asyncio.Task[None]] = []
        self.starting: asyncio.Task[None] | None = None
        self.closed = False  # close() was called: no poller is started again

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and bool(self.tasks)

    async def ensure(self, read_only: bool) -> asyncio.subprocess.Process:
        """The running poller, started if needed. The start runs in a task of its own that
        a cancelled caller does not cancel (a half-created subprocess never finishes)."""
        if not self.alive and not self.closed:
            if self.starting is None or self.starting.done():
                self.starting = asyncio.create_task(self._start(read_only), name="poller-start")
                self.starting.add_done_callback(_retrieve)
            await asyncio.shield(self.starting)
        if self.closed or self.proc is None:
            raise PollerGone("the dashboard's poller was stopped")
        return self.proc

    async def _start(self, read_only: bool) -> None:
        await self.stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "echoes_ops.tui.poller",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=2**20,
            )
        except OSError as exc:
            raise PollerGone(f"could not start the dashboard's poller: {exc}") from exc
        self.proc = proc
        self.stderr.clear()
        self._write(self.settings, read_only)
        self.tasks = [
            asyncio.create_task(self._read(proc), name="poller-reader"),
            asyncio.create_task(self._read_stderr(proc), name="poller-stderr"),
        ]

    def _write(self, *message: Any) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            raise PollerGone("the dashboard's poller is not running")
        proc.stdin.write(frame(message))

    async def call(self, method: str, args: tuple[Any, ...], read_only: bool) -> tuple[Any, ...]:
        """Run ``method`` in the poller: ``("ok", id, value, warnings)`` or ``("err", ...)``."""
        await self.ensure(read_only)
        rid = next(self.ids)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        try:
            self._write("call", rid, method, args, read_only)
            return await future
        finally:
            self.pending.pop(rid, None)

    async def stream(
        self, read_only: bool, on_status: Callable[[str], None]
    ) -> AsyncIterator[TailEvent]:
        """The poller's live tail: its events, its status lines to ``on_status``."""
        await self.ensure(read_only)
        rid = next(self.ids)
        queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.streams[rid] = queue
        try:
            self._write("tail", rid)
            while True:
                kind, _, value = await queue.get()
                if kind == "items":
                    for event in value:
                        yield event
                elif kind == "status":
                    on_status(value)
                elif kind == "end":
                    if value is not None:
                        raise value
                    return
        finally:
            self.streams.pop(rid, None)
            with contextlib.suppress(OpsError):
                self._write("cancel", rid)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        error: OpsError | None = None
        try:
            while True:
                message = await read_frame(proc.stdout)
                self._deliver(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except OpsError as exc:
            error = exc
        finally:
            if proc is self.proc:
                await self._gone(proc, error)

    def _deliver(self, message: tuple[Any, ...]) -> None:
        kind, rid = message[0], message[1]
        if kind in ("ok", "err"):
            future = self.pending.get(rid)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind in ("items", "status", "end"):
            queue = self.streams.get(rid)
            if queue is not None:
                queue.put_nowait(message)

    async def _gone(self, proc: asyncio.subprocess.Process, error: OpsError | None) -> None:
        """The poller's stdout ended: fail what waits on it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), STOP_WAIT)
            await asyncio.wait_for(asyncio.gather(*self.tasks[1:]), 1.0)  # its last words
        if error is None:
            last = next((line for line in reversed(self.stderr) if line.strip()), "")
            detail = f": {last.strip()}" if last else ""
            error = PollerGone(f"the dashboard's poller exited ({proc.returncode}){detail}")
        self._fail(error)
        self.tasks = []

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    async def close(self) -> None:
        """Stop the poller for good (a start in progress finishes first, then stops)."""
        self.closed = True
        if self.starting is not None and not self.starting.done():
            with contextlib.suppress(OpsError):
                await asyncio.shield(self.starting)
        await self.stop()

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        tasks, self.tasks = self.tasks, []
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the poller's cue to close its connections and exit
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail(PollerGone("the dashboard's poller was stopped"))

    def _fail(self, error: OpsError) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_result(("err", 0, error, []))
        for queue in self.streams.values():
            queue.put_nowait(("end", 0, error))


def _retrieve(task: asyncio.Task[None]) -> None:
    """A start nobody awaits any more (its caller was cancelled) must not log its error."""
    if not task.cancelled():
        task.exception()
