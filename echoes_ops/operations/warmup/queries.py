"""The PostgreSQL side of a warmup: the two (configurable) queries, prepared and checked
against the schema, and the batches read through a server-side cursor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from echoes_ops.contract.ids import check_character_id
from echoes_ops.errors import ConfigError, OpsError, PostgresError
from echoes_ops.operations.warmup.encoding import Batch, CharacterColumns

DEFAULT_CHARACTERS_QUERY = """\
SELECT id, name AS username, location_id, hp, max_hp, stamina, max_stamina, level, xp,
       last_movement_time, last_active_at
FROM characters
WHERE last_active_at >= now() - make_interval(mins => $1::int)"""

DEFAULT_INVENTORY_QUERY = """\
SELECT character_id, item_id, quantity, durability, is_equipped
FROM inventory
WHERE character_id = ANY($1::integer[])
ORDER BY character_id, item_id"""

INVENTORY_OWNER_COLUMN = "character_id"


def query_error(exc: BaseException, which: str, where: str) -> OpsError:
    setting = f"warmup_{which}_query"
    env = f"ECHOES_OPS_WARMUP_{which.upper()}_QUERY"
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    if isinstance(
        exc,
        asyncpg.exceptions.SyntaxOrAccessError
        | asyncpg.exceptions.DataError
        | asyncpg.exceptions.FeatureNotSupportedError,
    ) or (isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)):
        return ConfigError(
            f"the warmup {which} query failed on PostgreSQL at {where}: {text}",
            hint=f"check {setting} / {env} against the game's schema (see docs/warmup.md)",
        )
    return PostgresError(f"PostgreSQL at {where} failed during warmup: {text}")


PG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


# The inventory query's rows become JSON in PostgreSQL (compact, every column of the row, in
# column order: row_to_json's text), which costs PostgreSQL less than Python, and each
# character's rows come back as one text, joined by ITEM_SEPARATOR in the order the query
# returns them: one row per character instead of one per item, and no grouping in Python.
# JSON text never holds a raw control character, so the separator cannot occur inside an
# item. row_number() numbers the rows in the query's order and the subquery is sorted by
# (character_id, n), so string_agg reads each character's rows in that order and the
# groups come out by character_id (the outer ORDER BY costs nothing: the input is sorted).
# The sorted subquery replaces string_agg(... ORDER BY n), which before PostgreSQL 16 sorts
# every character's rows again on their own, one sort per character: with the booleans
# below, 1.4-2.05 us less CPU per character (PostgreSQL and this process, the default query,
# 100,000 characters; docs/benchmarks/warmup.md). Warmup turns parallel query off in its
# transaction, so no plan splits a character's rows. The sort is left to the planner: an
# incremental sort (a small sort per character, as the default query returns them) stays in
# memory where one sort of a batch's rows spilled to disk from about 12 rows a character
# (2,000 characters a batch, the default work_mem of 4 MB).
ITEM_SEPARATOR = "\x1e"
INVENTORY_WRAPPER = """\
SELECT character_id, string_agg(item, chr(30))
FROM (SELECT q.character_id, {item} AS item, row_number() OVER () AS n
      FROM ({query}
) q ORDER BY 1, 3) numbered
GROUP BY character_id
ORDER BY 1"""
# For one server (packed calls), each character's rows come in the wire protocol instead:
# their count, and each row as $<bytes>\r\n<json>\r\n, joined in the query's order, so the
# rows are neither split nor packed in Python (they are the call's last arguments). Only
# when the database's encoding is UTF-8, the client's: octet_length counts the bytes the
# text arrives in, which is what hiredis writes for the same text. Measured against
# splitting and packing the rows here (100,000 characters): this process 1.05-1.4 us less
# per character, PostgreSQL 0.8 us more, the sum 0.25-0.6 us less (docs/benchmarks/warmup.md).
INVENTORY_PACKED_WRAPPER = """\
SELECT character_id, count(*),
       string_agg('$' || octet_length(item) || E'\\r\\n' || item || E'\\r\\n', '')
FROM (SELECT q.character_id, {item} AS item, row_number() OVER () AS n
      FROM ({query}
) q ORDER BY 1, 3) numbered
GROUP BY character_id
ORDER BY 1"""
# row_to_json(q) itself costs PostgreSQL about a third more than the same text built by
# concatenation from the columns (it deforms a record built for the call); the columns'
# JSON is what row_to_json writes for each: to_json of the value, which for integers is
# their text output (so ::text, cheaper), null for NULL. A boolean's key and value (with
# the closing brace after the last column) are one constant picked by CASE: two
# concatenations and a cast fewer per row.
_PLAIN_JSON_TYPES = frozenset({"int2", "int4", "int8"})


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def item_json_sql(columns: Sequence[tuple[str, str]]) -> str:
    """The SQL expression of an inventory row's JSON text, for columns ``(name, type)`` of
    the query aliased ``q``: byte for byte ``row_to_json(q)::text``."""
    names = [name for name, _ in columns]
    if not columns or len(set(names)) != len(names):
        return "row_to_json(q)::text"  # a name twice: only row_to_json can say it
    parts: list[str] = []
    last = len(columns) - 1
    for i, (name, kind) in enumerate(columns):
        key = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        column = 'q."' + name.replace('"', '""') + '"'
        if kind == "bool":
            end = "}" if i == last else ""
            parts.append(
                f"CASE {column} WHEN true THEN {_literal(key + 'true' + end)} "
                f"WHEN false THEN {_literal(key + 'false' + end)} "
                f"ELSE {_literal(key + 'null' + end)} END"
            )
            continue
        value = f"{column}::text" if kind in _PLAIN_JSON_TYPES else f"to_json({column})::text"
        parts.append(_literal(key))
        parts.append(f"coalesce({value}, 'null')")
    if columns[last][1] != "bool":
        parts.append("'}'")
    return " || ".join(parts)


@dataclass
class Source:
    """The prepared queries and how to read their rows."""

    where: str
    characters: Any
    inventory: Any | None
    columns: CharacterColumns
    characters_args: tuple[Any, ...]
    ids_as_text: bool
    packed: bool = False  # inventories in the wire protocol (INVENTORY_PACKED_WRAPPER)


def _strip_sql(query: str) -> str:
    return query.strip().rstrip(";").rstrip()


async def prepare(
    conn: Any,
    where: str,
    characters_query: str,
    inventory_query: str | None,
    minutes: int,
    *,
    packed: bool = False,
) -> Source:
    """The prepared queries; with ``packed`` (one server) and a UTF-8 database the
    inventories come in the wire protocol (:data:`INVENTORY_PACKED_WRAPPER`), else as lists
    of JSON texts (``Source.packed`` says which)."""
    try:
        characters = await conn.prepare(_strip_sql(characters_query))
    except PG_ERRORS as exc:
        raise query_error(exc, "characters", where) from None
    params = characters.get_parameters()
    if len(params) > 1:
        raise ConfigError(
            f"the warmup characters query takes {len(params)} parameters; it may use only "
            "$1, the --active-within window in minutes"
        )
    columns = CharacterColumns.resolve([a.name for a in characters.get_attributes()])
    inventory = None
    ids_as_text = False
    if inventory_query is not None:
        query = _strip_sql(inventory_query)
        try:
            plain = await conn.prepare(query)
        except PG_ERRORS as exc:
            raise query_error(exc, "inventory", where) from None
        inv_params = plain.get_parameters()
        if len(inv_params) != 1 or inv_params[0].kind != "array":
            raise ConfigError(
                "the warmup inventory query must take exactly one parameter, $1, the array "
                "of character ids of a batch (e.g. WHERE character_id = ANY($1::integer[]))"
            )
        element = inv_params[0].name.removeprefix("_").removesuffix("[]")
        ids_as_text = element in {"text", "varchar", "bpchar", "name"}
        names = [a.name for a in plain.get_attributes()]
        if INVENTORY_OWNER_COLUMN not in names:
            raise ConfigError(
                "the warmup inventory query returns no character_id column "
                f"(it returns: {', '.join(names) or 'nothing'})",
                hint="alias the owner column: SELECT owner AS character_id, ...",
            )
        try:
            item = item_json_sql([(a.name, a.type.name) for a in plain.get_attributes()])
            packed = packed and await conn.fetchval("SHOW server_encoding") == "UTF8"
            wrapper = INVENTORY_PACKED_WRAPPER if packed else INVENTORY_WRAPPER
            inventory = await conn.prepare(wrapper.format(item=item, query=query))
        except PG_ERRORS as exc:
            raise query_error(exc, "inventory", where) from None
    return Source(
        where=where,
        characters=characters,
        inventory=inventory,
        columns=columns,
        characters_args=(minutes,) if params else (),
        ids_as_text=ids_as_text,
        packed=packed and inventory is not None,
    )


async def read_batch(source: Source, cursor: Any, size: int) -> Batch | None:
    """The next characters (and their inventories), or None at the end."""
    try:
        rows = await cursor.fetch(size)
    except PG_ERRORS as exc:
        raise query_error(exc, "characters", source.where) from None
    if not rows:
        return None
    inventory: dict[int, list[str]] = {}
    packed: dict[int, tuple[int, bytes]] = {}
    count = 0
    if source.inventory is not None:
        id_index = source.columns.id_index
        ids = [row[id_index] for row in rows]
        if source.ids_as_text:
            ids = [str(i) for i in ids]
        try:
            grouped = await source.inventory.fetch(ids)
        except PG_ERRORS as exc:
            raise query_error(exc, "inventory", source.where) from None
        for record in grouped:
            owner = record[0]
            if type(owner) is not int:
                try:
                    owner = check_character_id(owner)
                except ValueError:
                    continue  # not a character id: no player of this batch owns it
            if source.packed:
                items, blob = record[1], record[2].encode()
                count += items
                known = packed.get(owner)
                # ids that differ only in form ("5" and "05"): one list, in order
                packed[owner] = (
                    (items, blob) if known is None else (known[0] + items, known[1] + blob)
                )
                continue
            texts = record[1].split(ITEM_SEPARATOR)
            count += len(texts)
            bucket = inventory.get(owner)
            if bucket is None:
                inventory[owner] = texts
            else:  # ids that differ only in form ("5" and "05")
                bucket += texts
    return Batch(rows, inventory, count, packed if source.packed else None)


async def close(conn: Any) -> None:
    try:
        await conn.close(timeout=5.0)
    except (*PG_ERRORS, TimeoutError):
        conn.terminate()
