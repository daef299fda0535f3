"""Async Redis connections that pack commands with hiredis.

redis-py's asyncio connection packs every command in pure Python, which dominates the cost
of large pipelines (see BASELINES.md: ~70% of pipeline time). The sync client already packs
with ``hiredis.pack_command``; these classes do the same for the asyncio client. Everything
else (reading, parsing, reconnecting) is redis-py's own.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError


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


class HiredisPackingConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class HiredisPackingSSLConnection(SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class HiredisPackingUnixConnection(UnixDomainSocketConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)
