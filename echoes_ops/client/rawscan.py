"""Walking the whole keyspace with SCAN, keys as raw bytes.

:func:`echoes_ops.client.scan.scan_keys` walks one key family (``MATCH``) on a client that
decodes replies. A walk over *every* key (stats, doctor) also meets keys of other
applications, which need not be UTF-8 and would make a decoding client fail; here SCAN's
reply is read undecoded, so each key comes back as the exact bytes Redis holds. Callers
decode what they classify and pass the bytes back unchanged in follow-up commands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis

from echoes_ops.client.pacing import Pacer
from echoes_ops.client.scan import DEFAULT_SCAN_COUNT, scan_steps


async def scan_raw(
    r: Redis,
    *,
    match: str | None = None,
    count: int = DEFAULT_SCAN_COUNT,
    calls: list[int] | None = None,
    pacer: Pacer | None = None,
) -> AsyncIterator[list[bytes]]:
    """Yield batches of every key (``SCAN cursor [MATCH match] COUNT count``), as bytes.

    Keys may repeat (SCAN's guarantee during a rehash); single Redis or Sentinel primary.
    Each step is sized by the round trips so far (:func:`~echoes_ops.client.scan.scan_budget`,
    at most ``count`` keys) and paced like every stepped walk
    (:func:`~echoes_ops.client.scan.scan_steps`). ``calls``, if given, gets a 1 appended per
    command sent (each SCAN, empty steps included, and each ``INFO stats`` of the pacing).
    """
    extra: tuple[str, ...] = ("MATCH", match) if match is not None else ()
    async for batch in scan_steps(r, extra, count=count, raw=True, pacer=pacer, calls=calls):
        yield [k if isinstance(k, bytes) else str(k).encode() for k in batch]
