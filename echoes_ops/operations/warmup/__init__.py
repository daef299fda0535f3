"""Warm the session and inventory caches from PostgreSQL, safely enough to run from cron.

1. Open PostgreSQL, start one read-only REPEATABLE READ transaction (one consistent
   snapshot for every read) and prepare the two queries (configurable:
   ``warmup_characters_query`` and ``warmup_inventory_query``); an unreachable server or a
   query that does not fit the schema fails here, before anything is written.
2. Take ``lock:echoes-ops.warmup`` (a second, overlapping run stops with exit code 8).
3. Optionally re-preload the static data, which is a no-op when gamedata is unchanged.
4. Stream the recently active characters through a server-side cursor, ``batch_size``
   rows at a time, and fetch each batch's inventories with one query (one row per
   character, its items already JSON). While one batch is encoded, the previous one is
   being written to Redis and the next one read from PostgreSQL.
5. Write each batch with the ``WARMUP_PLAYERS`` Lua script (``contract/scripts_warmup.py``),
   as many players per EVALSHA as keep a call inside the command budget: calls report their
   server CPU time and the next calls are sized from it (``client.budget.StepBudget``);
   commands are packed by hiredis and streamed on one connection (``client.bulk``).

The script compares inside Redis, so a worker's write that lands while warmup runs is never
undone: a session whose ``last_heartbeat`` is newer than the row's last-active time is left
alone, and so is one whose heartbeat is unknown (not wall-clock epoch seconds, or missing).
A session or inventory that already holds exactly what would be written is not touched, so
a second run over unchanged data changes nothing. See docs/warmup.md.
"""

from echoes_ops.operations.warmup.queries import DEFAULT_CHARACTERS_QUERY, DEFAULT_INVENTORY_QUERY
from echoes_ops.operations.warmup.report import (
    WHAT_CHOICES,
    InventoryCounts,
    SessionCounts,
    WarmupReport,
    parse_what,
)
from echoes_ops.operations.warmup.run import (
    BATCH_SIZE,
    MAX_SCRIPT_BATCH,
    WARMUP_LOCK,
    warmup,
)

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_CHARACTERS_QUERY",
    "DEFAULT_INVENTORY_QUERY",
    "MAX_SCRIPT_BATCH",
    "WARMUP_LOCK",
    "WHAT_CHOICES",
    "InventoryCounts",
    "SessionCounts",
    "WarmupReport",
    "parse_what",
    "warmup",
]
