"""Frames between the dashboard and its poller process (:mod:`echoes_ops.tui.poller`).

A frame is a 4-byte big-endian length and a pickle of one tuple. Both ends are this
package, started together: pickle carries the operations' typed results as they are.

Dashboard to poller: ``("call", id, method, args, read_only)`` (``method`` one of
:data:`echoes_ops.tui.source.CALLS`), ``("tail", id)``,
``("cancel", id)``. Poller to dashboard: ``("ok", id, value, warnings)``, ``("err", id,
error, warnings)``, and for a tail ``("items", id, events)``, ``("status", id, text)``,
``("end", id, error or None)``.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, Final

from echoes_ops.errors import OpsError

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 256 * 1024 * 1024  # a frame longer than this is a broken stream


class BrokenStreamError(OpsError):
    """The frame stream between the dashboard and its poller is broken."""


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; :class:`asyncio.IncompleteReadError` at the end of the stream."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise BrokenStreamError(f"poller frame of {size:,} bytes: stream broken")
    body = await reader.readexactly(size)
    try:
        message = pickle.loads(body)
    except Exception as exc:  # whatever fails to load, the stream is broken
        raise BrokenStreamError(f"poller frame does not load ({exc}): stream broken") from exc
    if not isinstance(message, tuple) or len(message) < 2:
        raise BrokenStreamError("poller frame is not a message: stream broken")
    return message


def portable(error: OpsError) -> OpsError:
    """``error`` if it survives a pickle round trip, else an :class:`OpsError` with the same
    text and exit code (an error type with its own constructor arguments may not)."""
    try:
        pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any failure means: send the plain form
        plain = OpsError(str(error))
        plain.exit_code = error.exit_code
        return plain
    return error
