"""On one server each character's inventory rows come from PostgreSQL already in the wire
protocol (``queries.INVENTORY_PACKED_WRAPPER``): the packed calls are byte for byte those
built from the rows as JSON texts (``INVENTORY_WRAPPER``, packed by hiredis), whatever the
rows hold (non-ASCII, the separator and control characters, quotes and backslashes, no rows
at all, ids that differ only in form) and whatever the database's encoding. Real
PostgreSQL; no Redis."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from echoes_ops.operations.warmup.encoding import Encoded, PackedHead, encode_rows, headers
from echoes_ops.operations.warmup.queries import prepare, read_batch
from echoes_ops.operations.warmup.report import WarmupReport

CHARACTERS = "SELECT id, name AS username, last_active_at FROM characters ORDER BY id"
TRICKY = ["plain", "sep\x1einside", "line\nbreak\r\n", 'quote " and \\', "ünïcødé ✓", "é" * 300]


async def _seed(url: str, *, text_ids: bool, items: list[str] = TRICKY) -> None:
    conn = await asyncpg.connect(url)
    try:
        owner = "text" if text_ids else "int"
        await conn.execute(
            "DROP TABLE IF EXISTS inventory, characters;"
            "CREATE TABLE characters (id int PRIMARY KEY, name text, last_active_at timestamptz);"
            "INSERT INTO characters SELECT g, 'p' || g, now() FROM generate_series(1, 300) g;"
            f"CREATE TABLE inventory (owner {owner}, item text, rank int)"
        )
        await conn.execute(
            f"INSERT INTO inventory SELECT c::{owner}, ($1::text[])[1 + (c * 7 + k) % 6] || '#' || k, "
            "(c * 31 + k * 17) % 11 FROM generate_series(1, 300) c, generate_series(1, 7) k "
            "WHERE (c + k) % 9 <> 0 AND c % 10 <> 3",  # characters 3, 13, ... have no rows
            items,
        )
        if text_ids:  # the same character twice, in two forms
            await conn.execute(
                "INSERT INTO inventory SELECT '0' || c, 'padded ' || c, 1 "
                "FROM generate_series(1, 300, 4) c"
            )
    finally:
        await conn.close()


async def _calls(url: str, *, packed: bool, text_ids: bool, utf8: bool = True) -> list[bytes]:
    """Every player's call (one player a call, both headers) from one read of the rows."""
    ids = "text" if text_ids else "int"
    inventory = (
        f"SELECT owner AS character_id, item, rank FROM inventory "
        f"WHERE owner = ANY($1::{ids}[]) ORDER BY rank DESC, item"
    )
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        source = await prepare(conn, "test", CHARACTERS, inventory, 60, packed=packed)
        assert source.packed is (packed and utf8)
        cursor = await source.characters.cursor()
        encoded = Encoded(2, packed=True)
        rows = 0
        while (batch := await read_batch(source, cursor, 128)) is not None:
            assert (batch.packed_inventory is not None) is source.packed
            rows += batch.inventory_rows
            encode_rows(
                encoded,
                batch.characters,
                batch.inventory,
                source.columns,
                WarmupReport(False, ["inventories"], 60, time.time()),
                max_epoch=time.time() + 86400,
                packed_owned=batch.packed_inventory,
            )
    finally:
        await conn.close()
    header = ("0", "1.0", "2.0", "1800", "600", "1", "1", "pairs", "0", "username")
    calls = [str(rows).encode()]
    for head in headers(header):
        packed_head = PackedHead.of("f" * 40, head)
        calls += [encoded.packed_call(packed_head, i, 1)[0] for i in range(len(encoded.ids))]
    return calls


@pytest.mark.parametrize("text_ids", [False, True], ids=["int ids", "text ids"])
async def test_packed_rows_are_the_texts_packed(database_url, text_ids):
    await _seed(database_url, text_ids=text_ids)
    packed = await _calls(database_url, packed=True, text_ids=text_ids)
    texts = await _calls(database_url, packed=False, text_ids=text_ids)
    assert len(packed) == 601
    assert packed == texts
    assert any(b"sep\\u001einside" in call for call in packed)  # JSON escapes it
    assert any("ünïcødé ✓".encode() in call for call in packed)


async def test_a_latin1_database_sends_the_rows_as_texts(database_url):
    """In a LATIN1 database octet_length counts one byte for é where the text reaches this
    process in UTF-8 (two): there the rows come as texts, packed here, the same bytes."""
    parts = urlsplit(database_url)
    latin1 = urlunsplit(parts._replace(path="/wcli_latin1"))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP DATABASE IF EXISTS wcli_latin1")
        await conn.execute(
            "CREATE DATABASE wcli_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    finally:
        await conn.close()
    try:
        probe = await asyncpg.connect(latin1)
        try:
            assert await probe.fetchval("SHOW server_encoding") == "LATIN1"
        finally:
            await probe.close()
        tricky = [*TRICKY[:-2], "é" * 300, "Ünïcödé"]  # LATIN1 holds no ✓
        await _seed(latin1, text_ids=False, items=tricky)
        packed = await _calls(latin1, packed=True, text_ids=False, utf8=False)
        texts = await _calls(latin1, packed=False, text_ids=False, utf8=False)
        assert packed == texts
        assert any(("é" * 300).encode() in call for call in packed)
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP DATABASE IF EXISTS wcli_latin1")
        finally:
            await conn.close()
