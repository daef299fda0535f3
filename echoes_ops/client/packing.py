"""Async Redis connections that pack commands with hiredis.

redis-py's asyncio connection packs every command in pure Python, which dominates the cost
of large pipelines (see BASELINES.md: ~70% of pipeline time). The sync client already packs
with ``hiredis.pack_command``; these classes do the same for the asyncio client.

They also bound the socket write with ``asyncio.timeout`` instead of redis-py's
``asyncio.wait_for``: on Python 3.11, ``wait_for`` returns the inner result when a
cancellation (the CLI's abort on a second Ctrl-C) arrives as the write completes, so the
cancellation is lost and a loop of short writes runs on. Everything else (reading,
parsing, reconnecting) is redis-py's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    first = args[0]
    if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
        args = (*first.split(), *args[1:])
    for arg in args:
        if isinstance(arg, bool) or arg is None:
            raise DataError(
                f"Invalid input of type: {type(arg).__name__!r}. "
                "Convert to a bytes, string, int or float first."
            )
    try:
        return [hiredis.pack_command(args)]
    except TypeError as exc:
        raise DataError(str(exc)) from None


class _TimeoutBoundWrite(AbstractConnection):
    """The socket write bounded by ``asyncio.timeout`` around redis-py's own method (which
    runs without its ``wait_for`` while ``socket_timeout`` is unset for the call; one
    connection serves one command at a time, so nothing else reads it meanwhile)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class HiredisPackingConnection(_TimeoutBoundWrite, Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class HiredisPackingSSLConnection(_TimeoutBoundWrite, SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class HiredisPackingUnixConnection(_TimeoutBoundWrite, UnixDomainSocketConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)
