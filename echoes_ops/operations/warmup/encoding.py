"""Rows of the characters query, checked and encoded as the contract's strings, and the
batches of ``WARMUP_PLAYERS`` script calls built from them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from echoes_ops.client.bulk import Command
from echoes_ops.contract import codec, keys
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import ConfigError, DecodeError
from echoes_ops.operations.warmup.report import WarmupReport

# Required columns of the characters query.
ID_COLUMN = "id"
STAMP_COLUMN = "last_active_at"

Encoder = Callable[[Any], str]


def _bad(value: Any, expected: str) -> DecodeError:
    return DecodeError(f"{value!r} is not {expected}")


def _enc_text(value: Any) -> str:
    if value is None:
        return ""
    return value if type(value) is str else str(value)


def _location_encoder() -> Encoder:
    valid: set[str] = set()

    def encode(value: Any) -> str:
        if value is None:
            return ""
        text = value if type(value) is str else str(value)
        if text not in valid:
            check_name(text, "location id")
            valid.add(text)
        return text

    return encode


def _enc_int(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if kind in (float, Decimal) and math.isfinite(value) and value == int(value):
        return str(int(value))
    raise _bad(value, "a whole number")


def _enc_float(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return codec.encode_float(value)
    if value is None:
        return ""
    if kind is int or kind is Decimal:
        return codec.encode_float(float(value))
    if isinstance(value, datetime):
        return codec.encode_float(_epoch(value))
    raise _bad(value, "a number")


def _enc_bool(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    raise _bad(value, "a boolean")


# Session fields a row may provide, with their encoders; ``name`` is read as ``username``.
_FIELD_ENCODERS: dict[str, Callable[[], Encoder]] = {
    "location_id": _location_encoder,
    "username": lambda: _enc_text,
    "hp": lambda: _enc_int,
    "max_hp": lambda: _enc_int,
    "stamina": lambda: _enc_int,
    "max_stamina": lambda: _enc_int,
    "level": lambda: _enc_int,
    "xp": lambda: _enc_int,
    "last_movement_time": lambda: _enc_float,
    "in_combat": lambda: _enc_bool,
}
# Fields only a worker may write: a query returning them is refused.
_WORKER_FIELDS = frozenset({"worker_id", "websocket_connected", "last_heartbeat"})


def _epoch(value: Any) -> float:
    """Seconds since the epoch of a timestamp column (naive timestamps are taken as UTC)
    or of a number of epoch seconds."""
    if isinstance(value, datetime):
        moment: datetime = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if type(value) in (int, float, Decimal):
        return float(value)
    raise _bad(value, "a timestamp or epoch seconds")


@dataclass(frozen=True)
class CharacterColumns:
    """Where each needed value sits in a row of the characters query."""

    id_index: int
    stamp_index: int
    fields: tuple[tuple[int, str, Encoder], ...]
    ignored: tuple[str, ...]

    @classmethod
    def resolve(cls, names: Sequence[str]) -> CharacterColumns:
        index = {name: i for i, name in enumerate(names)}
        missing = [c for c in (ID_COLUMN, STAMP_COLUMN) if c not in index]
        if missing:
            raise ConfigError(
                f"the warmup characters query returns no {' or '.join(missing)} column "
                f"(it returns: {', '.join(names) or 'nothing'})",
                hint="alias the columns, e.g. SELECT player_id AS id, seen_at AS last_active_at",
            )
        forbidden = sorted(_WORKER_FIELDS & index.keys())
        if forbidden:
            raise ConfigError(
                f"the warmup characters query returns {', '.join(forbidden)}, which only a "
                "game worker writes; remove them from the query"
            )
        fields: list[tuple[int, str, Encoder]] = []
        used = {ID_COLUMN, STAMP_COLUMN}
        for name, make in _FIELD_ENCODERS.items():
            column = name
            if name == "username" and name not in index and "name" in index:
                column = "name"
            if column in index:
                fields.append((index[column], name, make()))
                used.add(column)
        ignored = tuple(n for n in names if n not in used)
        return cls(index[ID_COLUMN], index[STAMP_COLUMN], tuple(fields), ignored)


@dataclass
class Batch:
    characters: list[Any]
    inventory: dict[int, list[str]]
    inventory_rows: int


# -- building script calls ----------------------------------------------------------------


@dataclass
class Encoded:
    commands: list[Command]
    calls: list[list[int]]  # the character ids of each command, in order
    characters: int  # rows of the batch, valid or not
    inventory_rows: int


def encode_batch(
    batch: Batch,
    columns: CharacterColumns,
    report: WarmupReport,
    *,
    sha: str,
    header: Sequence[str],
    do_inventories: bool,
    script_batch: int,
    max_epoch: float,
) -> Encoded:
    """The batch's EVALSHA calls (``script_batch`` players each); invalid rows are counted
    in ``report`` and left out."""
    id_index, stamp_index, fields = columns.id_index, columns.stamp_index, columns.fields
    owned = batch.inventory
    min_epoch = codec.MIN_PLAUSIBLE_EPOCH
    commands: list[Command] = []
    calls: list[list[int]] = []
    keys_part: list[str] = []
    args_part: list[Any] = []
    call_ids: list[int] = []
    no_rows: list[str] = []
    # name, value for each field, then last_heartbeat <time>, websocket_connected false
    template: list[str] = []
    for _, name, _ in fields:
        template += (name, "")
    template += ("last_heartbeat", "", "websocket_connected", "false")
    values_slice = slice(1, 2 * len(fields), 2)
    stamp_at = 2 * len(fields) + 1
    # integer fields take a fast path for int values (most of them)
    plan = [(index, name, encode, encode is _enc_int) for index, name, encode in fields]

    for row in batch.characters:
        raw_id = row[id_index]
        column = ID_COLUMN
        try:
            cid = raw_id if type(raw_id) is int else check_character_id(raw_id)
            session_key, inventory_key = keys.player_cache_keys(cid)
            column = STAMP_COLUMN
            stamp = _epoch(row[stamp_index])
            if not min_epoch <= stamp <= max_epoch:
                raise _bad(row[stamp_index], "a plausible time")
            values: list[str] = []
            for index, name, encode, whole in plan:
                column = name
                value = row[index]
                values.append(str(value) if whole and type(value) is int else encode(value))
        except (DecodeError, ValueError) as exc:
            report.invalid += 1
            report.example("invalid", {"id": str(raw_id), "why": f"{column}: {exc}"})
            continue
        text_stamp = repr(stamp)
        pairs = template.copy()
        pairs[values_slice] = values
        pairs[stamp_at] = text_stamp
        keys_part.append(session_key)
        keys_part.append(inventory_key)
        args_part.append(text_stamp)
        args_part.append(str(values.count("")))
        args_part.extend(pairs)
        if do_inventories:
            items = owned.get(cid, no_rows)
            args_part.append(str(len(items)))
            args_part.extend(items)
        else:
            args_part.append("-1")
        call_ids.append(cid)
        if len(call_ids) >= script_batch:
            commands.append(("EVALSHA", sha, len(keys_part), *keys_part, *header, *args_part))
            calls.append(call_ids)
            keys_part, args_part, call_ids = [], [], []
    if call_ids:
        commands.append(("EVALSHA", sha, len(keys_part), *keys_part, *header, *args_part))
        calls.append(call_ids)
    return Encoded(commands, calls, len(batch.characters), batch.inventory_rows)


async def encode_yielding(
    batch: Batch, columns: CharacterColumns, report: WarmupReport, **options: Any
) -> Encoded:
    """:func:`encode_batch`, one script call at a time, giving the event loop a turn
    between calls: the next batch's PostgreSQL reads are sent (and their replies taken in)
    while this one is encoded, so PostgreSQL, Redis and this process work at the same time."""
    rows, step = batch.characters, options["script_batch"]
    whole = Encoded([], [], len(rows), batch.inventory_rows)
    for start in range(0, len(rows), step):
        part = Batch(rows[start : start + step], batch.inventory, 0)
        encoded = encode_batch(part, columns, report, **options)
        whole.commands += encoded.commands
        whole.calls += encoded.calls
        await asyncio.sleep(0)
    return whole
