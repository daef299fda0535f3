"""PostgreSQL's share of warmup: the inventory query's wrappers of a git revision against
this tree's, and the steps they are made of, per character (issue #16 item 3).

Run:  .venv/bin/python -m benchmarks.warmup_pg --base c8aa947 [--characters 100000]
      [--rounds 5] [--batch-size 2000] [--settle-ms 0]

Starts a private PostgreSQL, seeds ``--characters`` characters as ``benchmarks/warmup.py``
does (2-8 inventory rows each), and reads every batch's inventories (``--batch-size`` ids a
query, the default query, in warmup's read-only transaction without parallel query) with
each way below, the ways taking turns within every batch (each first in turn), so all see
the same machine. Per way and round: the backend's CPU (``/proc/PID/schedstat``, on-CPU
nanoseconds, read around every query) and this process's (``time.process_time``: asyncpg
decoding the rows and what warmup does with them), per character; then the medians and
each way's saving against the base's packed wrapper, paired by round.

- base packed / base joined: ``--base``'s wrappers (one server; cluster or non-UTF-8);
- packed / joined: this tree's (their outputs must be byte for byte the base's);
- the user's query alone: its rows, the JSON and the wire form built in Python instead;
- steps: the scan alone (``count(*)``), and with each row's JSON (summed, not sent).

The transaction has ``queries.WRAPPER_SETTING`` as ``prepare()`` gives warmup's
(``--no-setting``: without it; the base's wrappers do not sort incrementally either way).
``--settle-ms`` waits (blocking) after sending each query, so the rows have all arrived
before this process reads them: this process's CPU without the wake-ups of rows arriving
in pieces. CPU time, not wall time: on a shared machine the OS stops any process mid-work.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks.machine import load_average
from benchmarks.warmup import REPO, WINDOW, seed
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.operations.warmup import queries
from echoes_ops.operations.warmup.queries import (
    DEFAULT_CHARACTERS_QUERY,
    DEFAULT_INVENTORY_QUERY,
    ITEM_SEPARATOR,
)

Taken = dict[Any, Any]


def _base_queries(base: str) -> dict[str, Any]:
    """The module ``queries`` as it was at ``base`` (its wrappers and JSON expression)."""
    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{base}:echoes_ops/operations/warmup/queries.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("base_queries")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(text, f"{base}:queries.py", "exec"), module.__dict__)
    return module.__dict__


def take_packed(records: list[Any]) -> Taken:
    return {r[0]: (r[1], r[2].encode()) for r in records}


def take_joined(records: list[Any]) -> Taken:
    return {r[0]: r[1].split(ITEM_SEPARATOR) for r in records}


def take_rows(records: list[Any]) -> Taken:
    """The default query's rows as warmup's packed form, built here: row_to_json's text."""
    out: Taken = {}
    for r in records:
        durability = "null" if r[3] is None else r[3]
        text = (
            f'{{"character_id":{r[0]},"item_id":{json.dumps(r[1], ensure_ascii=False)},'
            f'"quantity":{r[2]},"durability":{durability},'
            f'"is_equipped":{"true" if r[4] else "false"}}}'
        ).encode()
        piece = b"$%d\r\n%s\r\n" % (len(text), text)
        known = out.get(r[0])
        out[r[0]] = (1, piece) if known is None else (known[0] + 1, known[1] + piece)
    return out


def take_nothing(records: list[Any]) -> Taken:
    return {}


def ways(base: dict[str, Any], columns: list[tuple[str, str]]) -> dict[str, tuple[str, Any]]:
    """name -> (SQL, what this process does with the rows)."""
    query = DEFAULT_INVENTORY_QUERY
    old_item, item = base["item_json_sql"](columns), queries.item_json_sql(columns)
    per_row = "SELECT sum(octet_length(item)) FROM (SELECT {} AS item FROM ({}\n) q) x"
    return {
        "base packed": (base["INVENTORY_PACKED_WRAPPER"].format(item=old_item, query=query),
                        take_packed),
        "packed": (queries.INVENTORY_PACKED_WRAPPER.format(item=item, query=query), take_packed),
        "base joined": (base["INVENTORY_WRAPPER"].format(item=old_item, query=query),
                        take_joined),
        "joined": (queries.INVENTORY_WRAPPER.format(item=item, query=query), take_joined),
        "the user's query alone, JSON here": (query, take_rows),
        "step: the scan alone": (f"SELECT count(*) FROM ({query}\n) q", take_nothing),
        "step: the scan and base JSON": (per_row.format(old_item, query), take_nothing),
        "step: the scan and JSON": (per_row.format(item, query), take_nothing),
    }  # fmt: skip


def on_cpu(pid: int) -> int:
    """Nanoseconds ``pid`` has run on a CPU."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def fetch(statement: Any, ids: list[int], settle: float) -> list[Any]:
    if not settle:
        return list(await statement.fetch(ids))
    task = asyncio.ensure_future(statement.fetch(ids))
    await asyncio.sleep(0)  # the query goes out
    time.sleep(settle)  # blocking: the rows arrive meanwhile
    return list(await task)


async def measure(url: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(url)
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    await conn.execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
        " SET LOCAL max_parallel_workers_per_gather = 0"
    )
    if getattr(queries, "WRAPPER_SETTING", None) and not args.no_setting:
        await conn.execute(queries.WRAPPER_SETTING)  # as prepare() plans this tree's wrappers
    ids = [row[0] for row in await conn.fetch(DEFAULT_CHARACTERS_QUERY, WINDOW)]
    batches = [ids[i : i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
    plain = await conn.prepare(DEFAULT_INVENTORY_QUERY)
    columns = [(a.name, a.type.name) for a in plain.get_attributes()]
    table = ways(_base_queries(args.base), columns)
    names = list(table)
    statements = {name: await conn.prepare(sql) for name, (sql, _) in table.items()}
    print(
        f"{len(ids):,} characters, {len(batches)} batches of {args.batch_size}; base "
        f"{args.base}; settle {args.settle_ms} ms; {getattr(queries, 'WRAPPER_SETTING', '')}"
        f"{' skipped' if args.no_setting else ''}; load average {load_average()}"
    )
    spent: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    outputs: dict[str, Taken] = {name: {} for name in names}
    gc.disable()  # a collection would land on whichever way runs then
    for round_ in range(args.rounds):
        cpu = {name: [0, 0.0] for name in names}
        for i, batch in enumerate(batches):
            shift = (i + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                take: Callable[[list[Any]], Taken] = table[name][1]
                py_start, pg_start = time.process_time(), on_cpu(pid)
                got = take(await fetch(statements[name], batch, args.settle_ms / 1000))
                cpu[name][0] += on_cpu(pid) - pg_start
                cpu[name][1] += time.process_time() - py_start
                if round_ == 0:
                    outputs[name].update(got)
        gc.collect()
        for name in names:
            spent[name].append((cpu[name][0] / 1e3 / len(ids), cpu[name][1] * 1e6 / len(ids)))
        print(f"  round {round_ + 1}: load average {load_average()}", flush=True)
    await conn.execute("ROLLBACK")
    await conn.close()
    for name, base in (("packed", "base packed"), ("joined", "base joined")):
        same = outputs[name] == outputs[base]
        print(f"  {name}: output {'identical to' if same else 'DIFFERS from'} {base}")
    same = outputs["the user's query alone, JSON here"] == outputs["base packed"]
    print(f"  the user's query alone: output {'identical' if same else 'DIFFERS'}")
    print(f"per character, median of {args.rounds} rounds [PostgreSQL least-most]; saving "
          "against base packed (PostgreSQL + this process), paired by round:")  # fmt: skip
    ref = spent["base packed"]
    for name in names:
        pg = [v[0] for v in spent[name]]
        py = [v[1] for v in spent[name]]
        saved = [(a[0] + a[1]) - (b[0] + b[1]) for a, b in zip(ref, spent[name], strict=True)]
        print(
            f"  {name:36s} PostgreSQL {statistics.median(pg):6.2f} us [{min(pg):5.2f}-"
            f"{max(pg):5.2f}]  Python {statistics.median(py):6.2f} us  saves "
            f"{statistics.median(saved):+5.2f} us [{min(saved):+5.2f} to {max(saved):+5.2f}]"
        )
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision whose wrappers to compare")
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2000, help="ids per inventory query")
    parser.add_argument("--settle-ms", type=float, default=0.0)
    parser.add_argument("--no-setting", action="store_true", help="without queries.WRAPPER_SETTING")
    parser.add_argument("--url", help="an already seeded PostgreSQL instead of a private one")
    args = parser.parse_args()
    print(f"this process at nice {os.nice(0)}")
    if args.url:
        asyncio.run(measure(args.url, args))
        return
    with tempfile.TemporaryDirectory(prefix="echoes-warmup-pg-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        pg.start()
        try:
            summary = asyncio.run(seed(pg.url, args.characters))
            print(f"seeded {summary.characters:,} characters, {summary.inventory_rows:,} rows")
            asyncio.run(measure(pg.url, args))
        finally:
            pg.destroy()


if __name__ == "__main__":
    main()
