"""The dashboard's poller process: ``python -m echoes_ops.tui.poller``.

It holds the dashboard's :class:`~echoes_ops.tui.source.RedisSource` and runs its calls
(polls, on-demand reads, writes, the live tail) for the dashboard, which talks to it over
stdin/stdout in :mod:`echoes_ops.tui.wire` frames. Decoding 100,000 sessions for a drift
pass or 1,000 pub/sub messages a second then costs this process's CPU, GIL and garbage
collector, never the screen's: key presses are handled while a poll runs.

The first frame is ``(settings, read_only)``. Calls run concurrently, each in its own task;
a tail streams its events in batches every ``FLUSH_EVERY`` seconds. The process lowers its
own priority (``NICENESS``) so the screen and Redis win the CPU on a busy machine, writes
nothing but frames to its stdout (stray prints go to stderr), and exits when its stdin
closes (the dashboard quit or died).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Coroutine
from typing import Any

from echoes_ops.config import Settings
from echoes_ops.errors import OpsError
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.source import CALLS, RedisSource
from echoes_ops.tui.wire import BrokenStreamError, frame, portable, read_frame

FLUSH_EVERY = 0.05  # seconds between two batches of tail events
MAX_PENDING = 5000  # tail events held while the dashboard does not read; older ones dropped
NICENESS = 5


class Server:
    def __init__(self, source: RedisSource, writer: asyncio.StreamWriter) -> None:
        self.source = source
        self.writer = writer
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def send(self, *message: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(message))

    def start(self, rid: int, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks[rid] = task
        task.add_done_callback(lambda _: self.tasks.pop(rid, None))

    async def call(self, rid: int, method: str, args: tuple[Any, ...], read_only: bool) -> None:
        source = self.source
        source.read_only = source.read_only or read_only  # never back to writable
        try:
            if method not in CALLS:
                raise BrokenStreamError(f"poller: unknown call {method!r}")
            value = await getattr(source, method)(*args)
        except OpsError as exc:
            self.send("err", rid, portable(exc), source.take_warnings())
        except Exception as exc:  # noqa: BLE001 - a bug: reported to the screen, traceback on stderr
            traceback.print_exc()
            failure = OpsError(f"poller: {method} failed: {type(exc).__name__}: {exc}")
            self.send("err", rid, failure, source.take_warnings())
        else:
            self.send("ok", rid, value, source.take_warnings())
        await self._drain()

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError):  # the dashboard is gone: serve() ends
            await self.writer.drain()

    async def tail(self, rid: int) -> None:
        pending: list[TailEvent] = []
        dropped = 0

        def status(text: str) -> None:
            self.send("status", rid, text)

        async def fill() -> None:
            nonlocal dropped
            async for event in self.source.tail(status):
                pending.append(event)
                if len(pending) > MAX_PENDING:
                    del pending[0]
                    dropped += 1

        reader = asyncio.create_task(fill())
        try:
            while not reader.done():
                await asyncio.sleep(FLUSH_EVERY)
                if pending:
                    self.send("items", rid, pending[:])
                    pending.clear()
                if dropped:
                    status(f"{dropped:,} messages dropped: the screen fell behind")
                    dropped = 0
                await self._drain()
            reader.result()
            self.send("items", rid, pending[:])
            self.send("end", rid, None)
        except OpsError as exc:
            self.send("end", rid, portable(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: reported to the screen, traceback on stderr
            traceback.print_exc()
            self.send("end", rid, OpsError(f"poller: tail failed: {type(exc).__name__}: {exc}"))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, OpsError):
                await reader

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return  # the dashboard closed our stdin
            kind, rid = message[0], message[1]
            if kind == "call":
                self.start(rid, self.call(rid, message[2], tuple(message[3]), message[4]))
            elif kind == "tail":
                self.start(rid, self.tail(rid))
            elif kind == "cancel":
                task = self.tasks.get(rid)
                if task is not None:
                    task.cancel()

    async def shutdown(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OpsError):
            await self.source.close()


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Frames in on stdin, out on (a copy of) stdout; fd 1 then points at stderr."""
    loop = asyncio.get_running_loop()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the dashboard decides; we follow its stdin
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    reader, writer = await _pipes()
    try:
        hello = await read_frame(reader)
    except asyncio.IncompleteReadError:
        return
    settings, read_only = hello
    if not isinstance(settings, Settings):
        raise SystemExit("poller: the first frame must be (settings, read_only)")
    source = RedisSource(settings, read_only=bool(read_only))
    server = Server(source, writer)
    try:
        await server.serve(reader)
    finally:
        await server.shutdown()
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
