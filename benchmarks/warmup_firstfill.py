"""An alternative to warmup's script for a first fill, measured and not adopted (#16 item 3;
docs/benchmarks/warmup.md, "Where the script's extra server time goes").

Into an empty cache the script writes every player as absent: HSET, EXPIRE, RPUSH, EXPIRE.
The same writes as plain commands cost the server about a third less, and a transaction
keeps them atomic against a live worker:

    WATCH <a step's keys>  EXISTS <the same keys>        (sent with the previous step)
    MULTI  HSET  EXPIRE  RPUSH  EXPIRE ...  EXEC          (when EXISTS said 0)

EXISTS after WATCH says no key of the step existed, and WATCH makes the server refuse the
EXEC if one was written in between. ``--server-split`` sends a first fill this way beside
the script. In a full warmup (the operation, on branch wsrv5-firstfill-eval) it lost:
building the plain commands from the packed script arguments cost the client more than the
server saved. Kept so that the figures can be measured again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA

from echoes_ops.operations.warmup.encoding import Encoded

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Transactions:
    """Builds a step's WATCH/EXISTS and its transaction from warmup's packed players."""

    def __init__(self, names: Sequence[str], session_ttl: int, inventory_ttl: int) -> None:
        self.names = [_bulk(name.encode()) for name in names]
        self.tail = _bulk(b"websocket_connected") + _bulk(b"false")
        self.session_ttl = _bulk(str(session_ttl).encode())
        self.inventory_ttl = _bulk(str(inventory_ttl).encode())

    def watch(self, encoded: Encoded, begin: int, end: int) -> bytes:
        joined = b"".join(encoded.key_blobs[begin:end])
        count = (end - begin) * encoded.keys_per_player + 1
        return b"*%d\r\n$5\r\nWATCH\r\n%s*%d\r\n$6\r\nEXISTS\r\n%s" % (
            count,
            joined,
            count,
            joined,
        )

    def transaction(self, encoded: Encoded, begin: int, end: int) -> tuple[bytes, int]:
        """MULTI, the writes of players ``begin`` to ``end`` (every one absent), EXEC; and
        how many commands it queues."""
        f = len(self.names)
        reader = hiredis.Reader()
        parts = [_MULTI]
        for i in range(begin, end):
            keys_blob = encoded.key_blobs[i]
            at = keys_blob.index(b"\r\n")
            cut = at + 4 + int(keys_blob[1:at])  # $<len>\r\n<key>\r\n
            session, inventory = keys_blob[:cut], keys_blob[cut:]
            reader.feed(b"*%d\r\n" % encoded.arg_counts[i])
            reader.feed(encoded.arg_blobs[i])
            values = reader.gets()  # stamp, the f field values, m, the m inventory rows
            fields = b"".join(
                name + _bulk(value)
                for name, value in zip(self.names, values[1 : f + 1], strict=True)
                if value  # "" = no value: the field is left out
            )
            count = 2 * sum(1 for value in values[1 : f + 1] if value) + 6
            parts.append(
                b"*%d\r\n$4\r\nHSET\r\n%s%s$14\r\nlast_heartbeat\r\n%s%s"
                % (count, session, fields, _bulk(values[0]), self.tail)
            )
            parts.append(b"*3\r\n$6\r\nEXPIRE\r\n%s%s" % (session, self.session_ttl))
            rows = values[f + 2 :]
            if rows:
                pushed = b"".join(_bulk(row) for row in rows)
                parts.append(b"*%d\r\n$5\r\nRPUSH\r\n%s%s" % (len(rows) + 2, inventory, pushed))
                parts.append(b"*3\r\n$6\r\nEXPIRE\r\n%s%s" % (inventory, self.inventory_ttl))
        queued = len(parts) - 1
        parts.append(_EXEC)
        return b"".join(parts), queued


async def _replies(conn: Any, payload: bytes, count: int) -> list[Any]:
    """Send ``payload`` on redis-py connection ``conn`` and read ``count`` replies from its
    hiredis reader in one loop."""
    await conn.send_packed_command(payload, check_health=False)
    parser = conn._parser
    replies: list[Any] = []
    while len(replies) < count:
        reply = parser._reader.gets()
        if reply is NOT_ENOUGH_DATA:
            await parser.read_from_socket()
        else:
            replies.append(reply)
    return replies


async def first_fill(r: Any, build: Transactions, packed: list[Encoded], step: int) -> None:
    """A first fill in transactions of ``step`` players, one step in flight."""
    conn = await r.connection_pool.get_connection()
    try:
        for item in packed:
            total = len(item.ids)
            begin, end = 0, min(step, total)
            replies = await _replies(conn, build.watch(item, begin, end), 2)
            while begin < total:
                if replies[-1] != 0:
                    raise RuntimeError("a first fill found a key: flush the server first")
                payload, queued = build.transaction(item, begin, end)
                after = min(end + step, total)
                count = queued + 2
                if after > end:
                    payload += build.watch(item, end, after)
                    count += 2
                replies = await _replies(conn, payload, count)
                if not isinstance(replies[queued + 1], list):
                    raise RuntimeError(f"EXEC refused or failed: {replies[queued + 1]!r}")
                begin, end = end, after
    finally:
        await r.connection_pool.release(conn)
