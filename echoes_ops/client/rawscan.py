"""Walking the whole keyspace with SCAN, keys as raw bytes.

:func:`echoes_ops.client.scan.scan_keys` walks one key family (``MATCH``) on a client that
decodes replies. A walk over *every* key (stats, doctor) also meets keys of other
applications, which need not be UTF-8 and would make a decoding client fail; here SCAN's
reply is read undecoded, so each key comes back as the exact bytes Redis holds. Callers
decode what they classify and pass the bytes back unchanged in follow-up commands.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from echoes_ops.client.scan import DEFAULT_SCAN_COUNT, scan_budget


async def scan_raw(
    r: Redis,
    *,
    match: str | None = None,
    count: int = DEFAULT_SCAN_COUNT,
    calls: list[int] | None = None,
) -> AsyncIterator[list[bytes]]:
    """Yield batches of every key (``SCAN cursor [MATCH match] COUNT count``), as bytes.

    Keys may repeat (SCAN's guarantee during a rehash); single Redis or Sentinel primary.
    Each step is sized by the round trips so far (:func:`~echoes_ops.client.scan.scan_budget`,
    at most ``count`` keys). ``calls``, if given, gets a 1 appended per SCAN sent (empty
    steps included).
    """
    budget = scan_budget(count)
    cursor = 0
    extra: tuple[str, ...] = ("MATCH", match) if match is not None else ()
    while True:
        size = budget.size
        sent = time.perf_counter()
        cursor, batch = await r.execute_command(  # type: ignore[no-untyped-call]
            "SCAN", cursor, *extra, "COUNT", size, NEVER_DECODE=True
        )
        budget.observe(size, time.perf_counter() - sent)
        if calls is not None:
            calls.append(1)
        if batch:
            yield [k if isinstance(k, bytes) else str(k).encode() for k in batch]
        if int(cursor) == 0:
            return
