"""Inventory rows as JSON built by concatenation in PostgreSQL: byte for byte what
row_to_json writes, for every column type a game's schema may use."""

from __future__ import annotations

import asyncpg
import pytest

from echoes_ops.contract import keys
from echoes_ops.operations.warmup import warmup
from echoes_ops.operations.warmup.queries import item_json_sql

INVENTORY = (
    'SELECT owner AS character_id, small, big, label, "Odd ""name""", price, ratio, flag, '
    'seen, day, tags, extra, maybe, blob, "ünï" '
    "FROM items WHERE owner = ANY($1::int[]) ORDER BY owner, big"
)


async def test_items_are_byte_for_byte_row_to_json(database_url, r):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE characters (id int PRIMARY KEY, last_active_at timestamptz);"
            "INSERT INTO characters SELECT g, now() FROM generate_series(1, 30) g;"
            'CREATE TABLE items (owner int, small int2, big int8, label text, "Odd ""name""" '
            "varchar, price numeric(8,2), ratio float8, flag bool, seen timestamptz, day date, "
            'tags text[], extra jsonb, maybe int, blob bytea, "ünï" text);'
            "INSERT INTO items SELECT c, (k - 3)::int2, c * 1000000000000 + k, "
            "'it''s \"q\" \\ ' || chr(30) || chr(10) || 'é✓' || k, 'v' || k, k * 1.5, "
            "CASE k WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN 'Infinity' WHEN 3 THEN 1e-7 "
            "ELSE k / 3.0 END, k % 2 = 0, '2026-01-02 03:04:05.678+00', '2026-01-02', "
            "ARRAY['a', 'b\"c'], '{\"x\": [1, 2.50, null]}', CASE WHEN k > 2 THEN k END, "
            "'\\x00ff', 'ü' FROM generate_series(1, 30) c, generate_series(1, 4) k"
        )
        types = await (await conn.prepare(INVENTORY)).fetch([1])
        assert types
        expected: dict[int, list[str]] = {}
        for owner in range(1, 31):
            rows = await conn.fetch(f"SELECT row_to_json(q)::text FROM ({INVENTORY}) q", [owner])
            expected[owner] = [row[0] for row in rows]
    finally:
        await conn.close()
    await warmup(
        r,
        database_url,
        operator="test",
        what=["inventories"],
        active_within=60,
        characters_query="SELECT id, last_active_at FROM characters",
        inventory_query=INVENTORY,
    )
    for owner, items in expected.items():
        assert await r.lrange(keys.inventory_key(owner), 0, -1) == items, owner


@pytest.mark.parametrize(
    ("columns", "falls_back"),
    [([("a", "int4"), ("a", "text")], True), ([], True), ([("a", "int4")], False)],
)
def test_a_name_twice_falls_back_to_row_to_json(columns, falls_back):
    assert (item_json_sql(columns) == "row_to_json(q)::text") is falls_back
