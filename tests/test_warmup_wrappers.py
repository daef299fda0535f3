"""The inventory query's wrappers (``queries.INVENTORY_WRAPPER`` and
``INVENTORY_PACKED_WRAPPER``, with ``item_json_sql``) give every batch byte for byte what
the wrappers they replaced gave: string_agg(... ORDER BY n) over an unsorted subquery, each
column's JSON by concatenation with a boolean as ``to_json``'s text. Varied rows (NULL in
every column, booleans first, middle and last, unicode, quotes and control characters,
characters without rows, ids as text in two forms, the user's own column order and an
order that is not by character_id), under plans the planner may pick (hashing or sorting,
spilling to disk). Real PostgreSQL; no Redis."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from echoes_ops.operations.warmup.encoding import Batch
from echoes_ops.operations.warmup.queries import (
    DEFAULT_INVENTORY_QUERY,
    Source,
    prepare,
    read_batch,
)

CHARACTERS = "SELECT id, last_active_at FROM characters ORDER BY id"

# The wrappers and the JSON expression as they were before the sorted subquery (c8aa947).
OLD_JOINED = """\
SELECT character_id, string_agg(item, chr(30) ORDER BY n)
FROM (SELECT q.character_id, {item} AS item, row_number() OVER () AS n
      FROM ({query}
) q) numbered
GROUP BY character_id"""
OLD_PACKED = """\
SELECT character_id, count(*),
       string_agg('$' || octet_length(item) || E'\\r\\n' || item || E'\\r\\n', '' ORDER BY n)
FROM (SELECT q.character_id, {item} AS item, row_number() OVER () AS n
      FROM ({query}
) q) numbered
GROUP BY character_id"""


def old_item_json_sql(columns: Sequence[tuple[str, str]]) -> str:
    parts: list[str] = []
    for i, (name, kind) in enumerate(columns):
        key = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        column = 'q."' + name.replace('"', '""') + '"'
        plain = kind in {"int2", "int4", "int8", "bool"}
        value = f"{column}::text" if plain else f"to_json({column})::text"
        parts.append("'" + key.replace("'", "''") + "'")
        parts.append(f"coalesce({value}, 'null')")
    parts.append("'}'")
    return " || ".join(parts)


TRICKY = ["plain", "sep\x1einside", "line\nbreak\r\n", "quote ' \" and \\", "ünïcødé ✓", "é" * 200]

# (the query's select list, its ORDER BY): the user's column order; booleans first, in the
# middle and last; an order by character_id or not.
SHAPES = {
    "bool last": (
        "owner AS character_id, item, qty, durability, equipped",
        "owner, item",
    ),
    "bool first, owner not first": (
        'equipped AS "Équipé", item, owner AS character_id, qty, durability',
        "rank DESC, item",
    ),
    "two bools, one in the middle": (
        "item, equipped, owner AS character_id, durability, cursed, note",
        "qty, item DESC",
    ),
    "a bool alone": ("owner AS character_id, equipped", "item"),
}

# Plans the planner may pick for either wrapper (set after prepare(), which turns
# incremental sort off): warmup's own, an incremental sort, no hashing, sorts that spill
# to disk.
PLANS = {
    "as warmup plans it": [],
    "incremental sort": ["SET LOCAL enable_incremental_sort = on"],
    "no hashing": ["SET LOCAL enable_hashagg = off"],
    "sorting on disk": ["SET LOCAL work_mem = '64kB'", "SET LOCAL hash_mem_multiplier = 1"],
}


async def _seed(conn: asyncpg.Connection, owner: str) -> None:
    await conn.execute(
        "DROP TABLE IF EXISTS inventory, characters;"
        "CREATE TABLE characters (id int PRIMARY KEY, last_active_at timestamptz);"
        "INSERT INTO characters SELECT g, now() FROM generate_series(1, 400) g;"
        f"CREATE TABLE inventory (owner {owner}, item text, qty int, durability int, "
        "equipped bool, cursed bool, rank int, note text)"
    )
    # 1-9 rows a character, none for 5, 15, ...; NULL in every column now and then
    await conn.execute(
        f"INSERT INTO inventory SELECT c::{owner}, "
        "CASE WHEN (c + k) % 17 = 0 THEN NULL "
        "ELSE ($1::text[])[1 + (c * 7 + k) % 6] || '#' || k END, "
        "CASE WHEN (c * k) % 13 = 0 THEN NULL ELSE (c * 31 + k * 17) % 11 - 3 END, "
        "CASE WHEN k % 3 = 0 THEN NULL ELSE k * 10 END, "
        "CASE (c + k) % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END, "
        "(c + 2 * k) % 4 = 0, (c * 7 + k * 3) % 5, "
        "CASE WHEN k = 2 THEN NULL ELSE 'n' || c || '.' || k END "
        "FROM generate_series(1, 400) c, generate_series(1, 1 + c % 9) k "
        "WHERE c % 10 <> 5",
        TRICKY,
    )
    if owner == "text":  # the same character in a second form
        await conn.execute(
            "INSERT INTO inventory SELECT '0' || c, 'padded ' || c, 1, NULL, true, false, 0, "
            "'ü' FROM generate_series(1, 400, 3) c"
        )


async def _read_all(source: Source, size: int) -> list[Batch]:
    cursor = await source.characters.cursor()
    batches = []
    while (batch := await read_batch(source, cursor, size)) is not None:
        batches.append(batch)
    return batches


async def _old_source(conn: asyncpg.Connection, source: Source, query: str) -> Source:
    plain = await conn.prepare(query)
    columns = [(a.name, a.type.name) for a in plain.get_attributes()]
    wrapper = OLD_PACKED if source.packed else OLD_JOINED
    old = await conn.prepare(wrapper.format(item=old_item_json_sql(columns), query=query))
    return dataclasses.replace(source, inventory=old)


def _same(new: list[Batch], old: list[Batch], packed: bool) -> None:
    """The batches hold the same inventories, owners in the same order; else an
    AssertionError naming the first difference. Not bare asserts: under ``CI=true`` pytest
    does not truncate its explanation of a failed assert, and its diff of two batches'
    inventories (the expected failure below) ran for minutes."""
    if len(new) != len(old):
        raise AssertionError(f"{len(new)} batches against {len(old)}")
    for n, (a, b) in enumerate(zip(new, old, strict=True)):
        if a.inventory_rows != b.inventory_rows:
            raise AssertionError(f"batch {n}: {a.inventory_rows} rows against {b.inventory_rows}")
        mine: dict[Any, Any] | None = a.packed_inventory if packed else a.inventory
        theirs: dict[Any, Any] = (b.packed_inventory if packed else b.inventory) or {}
        if mine is None:
            raise AssertionError(f"batch {n}: no inventories")
        # the merged forms of one id keep the order the old wrapper gave them
        if list(mine) != list(theirs):
            raise AssertionError(f"batch {n}: other owners or another order")
        for owner, items in mine.items():
            if items != theirs[owner]:
                raise AssertionError(f"batch {n}, character {owner!r}: {items!r:.300}")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("owner", ["int", "text"], ids=["int ids", "text ids"])
async def test_batches_are_those_of_the_previous_wrappers(
    database_url: str, owner: str, shape: str
) -> None:
    select, order = SHAPES[shape]
    query = f"SELECT {select} FROM inventory WHERE owner = ANY($1::{owner}[]) ORDER BY {order}"
    conn = await asyncpg.connect(database_url)
    try:
        await _seed(conn, owner)
        for plan in PLANS.values():
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            for packed in (True, False):
                new = await prepare(conn, "test", CHARACTERS, query, 60, packed=packed)
                assert new.packed is packed
                old = await _old_source(conn, new, query)
                for setting in plan:  # the statements are planned when they run
                    await conn.execute(setting)
                for size in (64, 400):
                    got: Any = await _read_all(new, size)
                    want: Any = await _read_all(old, size)
                    _same(got, want, packed)
                    assert sum(batch.inventory_rows for batch in got) > 1500
            await conn.execute("ROLLBACK")
    finally:
        await conn.close()


async def test_the_comparison_sees_a_row_out_of_order(database_url: str) -> None:
    """The comparison above can fail: a wrapper that numbers the rows backwards gives
    each character's rows in the other order, and the batches differ."""
    query = (
        "SELECT owner AS character_id, item, equipped FROM inventory "
        "WHERE owner = ANY($1::int[]) ORDER BY owner, item"
    )
    conn = await asyncpg.connect(database_url)
    try:
        await _seed(conn, "int")
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        new = await prepare(conn, "test", CHARACTERS, query, 60, packed=True)
        old = await _old_source(conn, new, query)
        assert new.inventory is not None
        backwards = await conn.prepare(
            new.inventory.get_query().replace("ORDER BY 1, 3", "ORDER BY 1, 3 DESC")
        )
        flipped = dataclasses.replace(new, inventory=backwards)
        with pytest.raises(AssertionError):
            _same(await _read_all(flipped, 400), await _read_all(old, 400), True)
        _same(await _read_all(new, 400), await _read_all(old, 400), True)
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()


async def test_a_batch_of_large_inventories_is_sorted_in_memory(database_url: str) -> None:
    """The wrapper's sort stays within work_mem for a batch of 2,000 characters with 30 rows
    each: the planner's incremental sort (one small sort per character). With incremental sort
    turned off, as warmup's transaction once did, one sort of the batch spilled to disk."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS inventory, characters;"
            "CREATE TABLE characters (id int PRIMARY KEY, last_active_at timestamptz);"
            "INSERT INTO characters SELECT g, now() FROM generate_series(1, 2000) g;"
            "CREATE TABLE inventory (character_id int, item_id text, quantity int, "
            "durability int, is_equipped bool, PRIMARY KEY (character_id, item_id));"
            "INSERT INTO inventory SELECT c, 'item_' || k || '_of_a_long_name', k, 100, "
            "k % 2 = 0 FROM generate_series(1, 2000) c, generate_series(1, 30) k;"
            "ANALYZE inventory"
        )
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        source = await prepare(conn, "test", CHARACTERS, DEFAULT_INVENTORY_QUERY, 60, packed=True)
        assert source.inventory is not None
        sql = f"EXPLAIN ANALYZE {source.inventory.get_query()}"
        lines = [row[0] for row in await conn.fetch(sql, list(range(1, 2001)))]
        # the wrapper's own sort: by character and the rows' numbers (the user's query may
        # sort too, by its own ORDER BY, as PostgreSQL plans it)
        keyed = [i for i, line in enumerate(lines) if "Sort Key" in line and "row_number" in line]
        assert keyed, lines
        methods = [line for i in keyed for line in lines[i : i + 4] if "Sort Method" in line]
        assert methods, lines
        for method in methods:
            assert "Memory" in method, lines
            assert "Disk" not in method, lines
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()
