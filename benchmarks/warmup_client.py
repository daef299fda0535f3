"""Where warmup's client and PostgreSQL time per character goes (``benchmarks/warmup.py
--client-split``; issue #16 item 3).

Each stage of a first fill on one server runs alone, ``--split-rounds`` times, and is
measured by CPU time (the least of the rounds, with the median): this process's
(``time.process_time``) and the PostgreSQL backend's (``/proc/PID/stat`` of the connection's
backend, found with ``pg_backend_pid()``):

- reading: the characters cursor's pages (``BATCH_SIZE`` rows each), each batch's
  inventory query (the rows as JSON, grouped per character by PostgreSQL, packed in the wire
  protocol in a UTF-8 database), and what this process does with each character's rows
  (the packed rows encoded to bytes; else split), each timed apart;
- encoding: ``encode_rows`` over the batches, packed for one server (``encode_yielding``'s
  slices, without its turns of the event loop);
- writing: the packed calls sent in warmup's steps (``write_stepwise`` over a
  ``StepConnection``, sized by ``StepBudget``) to an emptied Redis: this process's share
  only (the server's is ``--server-split``).

CPU time rather than wall time: on a shared machine the OS stops any of the three
processes in the middle of its work. The stages overlap in a real run, so their sum is what
the run costs, not how long it takes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg

from benchmarks.machine import process_cpu
from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import StepConnection
from echoes_ops.contract import codec, keys, scripts_warmup
from echoes_ops.operations.warmup import DEFAULT_CHARACTERS_QUERY, DEFAULT_INVENTORY_QUERY
from echoes_ops.operations.warmup.encoding import (
    ENCODE_SLICE,
    Encoded,
    PackedHead,
    encode_rows,
    headers,
)
from echoes_ops.operations.warmup.queries import ITEM_SEPARATOR, Source, prepare
from echoes_ops.operations.warmup.report import WarmupReport
from echoes_ops.operations.warmup.run import (
    BATCH_SIZE,
    CALLS_IN_FLIGHT,
    FIRST_STEP,
    MAX_SCRIPT_BATCH,
    STEP_TARGET_S,
)
from echoes_ops.operations.warmup.writer import write_stepwise

STAGES = (
    "characters query (cursor pages)",
    "inventory query (JSON, grouped)",
    "taking the inventory rows",
    "encoding (packed)",
    "writing the calls (client)",
)


async def _read(conn: asyncpg.Connection, window: int) -> tuple[Source, list[Any], dict[str, Any]]:
    """The batches as warmup reads them, with each part's CPU on both sides."""
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    await conn.execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
        " SET LOCAL max_parallel_workers_per_gather = 0"
    )
    source = await prepare(
        conn, "bench", DEFAULT_CHARACTERS_QUERY, DEFAULT_INVENTORY_QUERY, window, packed=True
    )
    assert source.inventory is not None
    cursor = await source.characters.cursor(*source.characters_args)
    spent = {stage: [0.0, 0.0] for stage in STAGES[:3]}  # stage -> [this process, PostgreSQL]
    batches: list[tuple[list[Any], Any]] = []
    while True:
        py, pg = time.process_time(), process_cpu(pid)
        rows = await cursor.fetch(BATCH_SIZE)
        spent[STAGES[0]][0] += time.process_time() - py
        spent[STAGES[0]][1] += process_cpu(pid) - pg
        if not rows:
            break
        py, pg = time.process_time(), process_cpu(pid)
        grouped = await source.inventory.fetch([row[source.columns.id_index] for row in rows])
        spent[STAGES[1]][0] += time.process_time() - py
        spent[STAGES[1]][1] += process_cpu(pid) - pg
        py = time.process_time()
        if source.packed:  # one server, a UTF-8 database: the rows come packed
            owned: Any = {record[0]: (record[1], record[2].encode()) for record in grouped}
        else:
            owned = {owner: joined.split(ITEM_SEPARATOR) for owner, joined in grouped}
        spent[STAGES[2]][0] += time.process_time() - py
        batches.append((rows, owned))
    await conn.execute("ROLLBACK")
    return source, batches, spent


def _encode(source: Source, batches: list[Any], max_epoch: float) -> list[Encoded]:
    report = WarmupReport(False, ["sessions", "inventories"], 1, time.time())
    encoded = []
    for rows, owned in batches:
        item = Encoded(2, packed=True)
        for start in range(0, len(rows), ENCODE_SLICE):
            encode_rows(
                item,
                rows[start : start + ENCODE_SLICE],
                {} if source.packed else owned,
                source.columns,
                report,
                max_epoch=max_epoch,
                packed_owned=owned if source.packed else None,
            )
        encoded.append(item)
    return encoded


async def _write(r: Any, source: Source, encoded: list[Encoded], max_epoch: float) -> float:
    """This process's CPU seconds to send every call in warmup's steps to an empty Redis."""
    await r.flushall()
    sha = str(await r.script_load(scripts_warmup.WARMUP_PLAYERS))
    names = [name for _, name, _ in source.columns.fields]
    header = ("0", repr(codec.MIN_PLAUSIBLE_EPOCH), repr(max_epoch), str(keys.SESSION_TTL),
              str(keys.INVENTORY_TTL), "1", str(len(names)), "pairs", "0", *names)  # fmt: skip
    measured, plain = headers(header)
    heads = (PackedHead.of(sha, measured), PackedHead.of(sha, plain))
    sizer = StepBudget(size=FIRST_STEP, target=STEP_TARGET_S, low=1, high=MAX_SCRIPT_BATCH)
    async with StepConnection(r) as line:
        started = time.process_time()
        for item in encoded:
            await write_stepwise(line.packed, item, heads, sizer, CALLS_IN_FLIGHT)
        return time.process_time() - started


async def client_split(r: Any, pg_url: str, window: int, *, rounds: int) -> None:
    figures: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}
    characters = 0
    for _ in range(rounds):
        conn = await asyncpg.connect(pg_url)
        try:
            source, batches, spent = await _read(conn, window)
        finally:
            await conn.close()
        for stage, (py, pg) in spent.items():
            figures[stage].append((py, pg))
        characters = sum(len(rows) for rows, _ in batches)
        max_epoch = time.time() + codec.MAX_FUTURE_SKEW
        started = time.process_time()
        encoded = _encode(source, batches, max_epoch)
        figures[STAGES[3]].append((time.process_time() - started, 0.0))
        figures[STAGES[4]].append((await _write(r, source, encoded, max_epoch), 0.0))
    await r.flushall()
    print(
        f"client and PostgreSQL CPU per character, each stage alone ({characters:,} "
        f"characters, least of {rounds} rounds [median]):"
    )
    totals = [0.0, 0.0]
    for stage, values in figures.items():
        py = [v[0] / characters * 1e6 for v in values]
        pg = [v[1] / characters * 1e6 for v in values]
        totals[0] += min(py)
        totals[1] += min(pg)
        postgres = (
            f"  PostgreSQL {min(pg):5.1f} us [{statistics.median(pg):5.1f}]" if max(pg) else ""
        )
        print(f"  {stage:34s} Python {min(py):5.1f} us [{statistics.median(py):5.1f}]{postgres}")
    print(f"  {'sum of the least':34s} Python {totals[0]:5.1f} us  PostgreSQL {totals[1]:5.1f} us")
