"""Rows of the characters query, checked and encoded as the contract's strings, and the
batches of ``WARMUP_PLAYERS`` script calls built from them."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import hiredis
import orjson

from echoes_ops.client.bulk import Command
from echoes_ops.contract import codec, keys
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import ConfigError, DecodeError
from echoes_ops.operations.warmup.report import WarmupReport

# Required columns of the characters query.
ID_COLUMN = "id"
STAMP_COLUMN = "last_active_at"

Encoder = Callable[[Any], str]
# hiredis's own packer (its stub types a command as a 1-tuple)
_pack = cast(Callable[[tuple[Any, ...]], bytes], hiredis.pack_command)


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


# Where orjson is used for a float's text: 0 and magnitudes from 1e-4 up to 1e16, where it
# writes exactly what ``repr`` writes (the shortest text that reads back as the same float).
# Below 1e-4 the two differ (orjson 0.00001, repr 1e-05); above 1e16 they agree in the
# locked orjson, but repr is kept there: the range is what tests/test_warmup_floats.py holds
# orjson to (edge values and 300,000 random floats), and a row's floats (epoch seconds,
# positions) lie inside it.
_ORJSON_LOW, _ORJSON_HIGH = 1e-4, 1e16
_dumps = orjson.dumps


def float_text(value: float) -> str:
    """``codec.encode_float(value)`` (``repr``; non-finite numbers refused), in a fifth of
    the time: on this machine ``repr`` of an epoch time took 0.78 us and orjson's text
    0.17 us (timeit), and a character has two (its row time and last_movement_time)."""
    if _ORJSON_LOW <= abs(value) < _ORJSON_HIGH or value == 0.0:
        return _dumps(value).decode()
    return codec.encode_float(value)


def _enc_float(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return float_text(value)
    if value is None:
        return ""
    if kind is int or kind is Decimal:
        return float_text(float(value))
    if isinstance(value, datetime):
        return float_text(_epoch(value))
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


# A player's keys in the wire protocol ($<length>\r\n<key>\r\n each), formatted from the
# contract's key formats with the character id: a key is its format's length less the two
# characters of "%d", plus the id's digits.
_PAIR_KEYS = (
    "$%d\r\n" + keys.SESSION_KEY_FORMAT + "\r\n$%d\r\n" + keys.INVENTORY_KEY_FORMAT + "\r\n"
).encode()
_SESSION_KEY = ("$%d\r\n" + keys.SESSION_KEY_FORMAT + "\r\n").encode()
_SESSION_BASE = len(keys.SESSION_KEY_FORMAT) - 2
_INVENTORY_BASE = len(keys.INVENTORY_KEY_FORMAT) - 2


@dataclass
class Batch:
    characters: list[Any]
    inventory: dict[int, list[str]]  # each character's rows as JSON texts
    inventory_rows: int
    # or (one server) their count and the rows in the wire protocol, one $<len>\r\n<json>\r\n
    # each (queries.INVENTORY_PACKED_WRAPPER)
    packed_inventory: dict[int, tuple[int, bytes]] | None = None


# -- building script calls ----------------------------------------------------------------


# Where the script's "measure this call" flag sits in its header (ARGV[9]), and how often it
# is set: measuring reads INFO cpu twice, a few microseconds, so one call in four is enough.
MEASURE_FLAG = 8
MEASURE_EVERY = 4


@dataclass
class Encoded:
    """Players as the script's per-player arguments, laid end to end, ready to be cut into
    calls of any size at send time.

    Two forms. ``packed`` (one server): each player's keys and arguments are already in the
    wire protocol (RESP, packed by hiredis as they are encoded), so a call is cut by joining
    bytes (:meth:`packed_call`) while the previous step is on the server, and nothing is
    packed twice. Otherwise (Redis Cluster, where calls are regrouped by slot) as strings,
    cut into command tuples (:meth:`commands`, :meth:`call`)."""

    keys_per_player: int  # 2 (session, inventory: mode pairs) or 1 (mode sessions)
    packed: bool = False
    ids: list[int] = field(default_factory=list)  # each player's character id, in order
    keys: list[str] = field(default_factory=list)  # each player's keys, end to end
    args: list[str] = field(default_factory=list)  # each player's arguments, end to end
    starts: list[int] = field(default_factory=list)  # where each player's arguments start
    key_blobs: list[bytes] = field(default_factory=list)  # packed: each player's keys, RESP
    arg_blobs: list[bytes] = field(default_factory=list)  # packed: its arguments, RESP
    arg_counts: list[int] = field(default_factory=list)  # packed: how many arguments
    splits: set[int] = field(default_factory=set)  # players whose id is already in the batch
    seen: set[int] = field(default_factory=set)
    characters: int = 0  # rows of the batch, valid or not
    inventory_rows: int = 0

    @property
    def mode(self) -> str:
        return "pairs" if self.keys_per_player == 2 else "sessions"

    def commands(
        self, sha: str, header: Sequence[str], step: int
    ) -> tuple[list[Command], list[int]]:
        """EVALSHA calls of at most ``step`` players each, and how many players each holds.
        ``header`` is the script's ARGV before the players; its measure flag (ARGV[9]) is set
        on every :data:`MEASURE_EVERY` th call."""
        commands: list[Command] = []
        sizes: list[int] = []
        measured, plain = headers(header)
        begin = 0
        while begin < len(self.ids):
            head = plain if len(sizes) % MEASURE_EVERY else measured
            command, end = self.call(sha, head, begin, step)
            commands.append(command)
            sizes.append(end - begin)
            begin = end
        return commands, sizes

    def _end(self, begin: int, step: int) -> int:
        """Where a call of at most ``step`` players from ``begin`` ends: a call never holds
        one player twice (the script judges keys as they were when the call began)."""
        end = min(begin + step, len(self.ids))
        if self.splits:
            end = next((i for i in range(begin + 1, end) if i in self.splits), end)
        return end

    def call(self, sha: str, head: Sequence[str], begin: int, step: int) -> tuple[Command, int]:
        """The EVALSHA call of at most ``step`` players from player ``begin`` on, and where
        the next call starts."""
        assert not self.packed
        width = self.keys_per_player
        end = self._end(begin, step)
        part = self.keys[begin * width : end * width]
        starts = self.starts
        stop = starts[end] if end < len(starts) else len(self.args)
        return ("EVALSHA", sha, len(part), *part, *head, *self.args[starts[begin] : stop]), end

    def packed_call(self, head: PackedHead, begin: int, step: int) -> tuple[bytes, int]:
        """:meth:`call` in the wire protocol, joined from the players' packed bytes."""
        assert self.packed
        end = self._end(begin, step)
        keys = (end - begin) * self.keys_per_player
        count = 3 + keys + head.count + sum(self.arg_counts[begin:end])
        numkeys = str(keys)
        payload = b"".join(
            [
                b"*%d\r\n" % count,
                head.sha,
                b"$%d\r\n%s\r\n" % (len(numkeys), numkeys.encode()),
                *self.key_blobs[begin:end],
                head.args,
                *self.arg_blobs[begin:end],
            ]
        )
        return payload, end


@dataclass(frozen=True)
class PackedHead:
    """The start of every packed call: ``EVALSHA <sha>`` and the script's header, in RESP."""

    sha: bytes  # "EVALSHA" and the sha, packed
    args: bytes  # the header's arguments, packed
    count: int  # how many arguments the header holds

    @classmethod
    def of(cls, sha: str, header: Sequence[str]) -> PackedHead:
        return cls(_unprefixed(("EVALSHA", sha)), _unprefixed(tuple(header)), len(header))


def _unprefixed(args: tuple[str, ...]) -> bytes:
    """``args`` packed as RESP bulk strings, without the array header a command has."""
    packed = _pack(args)
    return packed[len(b"*%d\r\n" % len(args)) :]


def headers(header: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``header`` with its measure flag set, and with it cleared."""
    measured = (*header[:MEASURE_FLAG], "1", *header[MEASURE_FLAG + 1 :])
    plain = (*header[:MEASURE_FLAG], "0", *header[MEASURE_FLAG + 1 :])
    return measured, plain


def encode_rows(
    encoded: Encoded,
    rows: Sequence[Any],
    owned: dict[int, list[str]],
    columns: CharacterColumns,
    report: WarmupReport,
    *,
    max_epoch: float,
    packed_owned: dict[int, tuple[int, bytes]] | None = None,
) -> None:
    """Append ``rows`` (of the characters query) to ``encoded`` as ``WARMUP_PLAYERS``
    arguments: the row's time and its field values, then (mode pairs) the inventory rows,
    from ``owned`` or, packed and already in the wire protocol, ``packed_owned``.
    Invalid rows are counted in ``report`` and left out."""
    id_index, stamp_index = columns.id_index, columns.stamp_index
    min_epoch, text_of = codec.MIN_PLAUSIBLE_EPOCH, float_text
    ids, seen, splits, starts, args = (
        encoded.ids,
        encoded.seen,
        encoded.splits,
        encoded.starts,
        encoded.args,
    )
    add_key, add_arg, add_args = encoded.keys.append, args.append, args.extend
    no_rows: list[str] = []
    no_packed: tuple[int, bytes] = (0, b"")
    session_format, inventory_format = keys.SESSION_KEY_FORMAT, keys.INVENTORY_KEY_FORMAT
    pairs = encoded.keys_per_player == 2
    packed, pack = encoded.packed, _pack
    pair_keys, session_key = _PAIR_KEYS, _SESSION_KEY
    session_base, inventory_base = _SESSION_BASE, _INVENTORY_BASE
    add_key_blob, add_arg_blob = encoded.key_blobs.append, encoded.arg_blobs.append
    add_count = encoded.arg_counts.append
    # integer fields take a fast path for int values (most of them)
    plan = [(index, name, encode, encode is _enc_int) for index, name, encode in columns.fields]

    for row in rows:
        raw_id = row[id_index]
        column = ID_COLUMN
        try:
            cid = raw_id if type(raw_id) is int and raw_id > 0 else check_character_id(raw_id)
            column = STAMP_COLUMN
            raw_stamp = row[stamp_index]
            stamp = (
                raw_stamp.timestamp()
                if type(raw_stamp) is datetime and raw_stamp.tzinfo
                else _epoch(raw_stamp)
            )
            if not min_epoch <= stamp <= max_epoch:
                raise _bad(raw_stamp, "a plausible time")
            values: list[str] = [text_of(stamp)]
            for index, name, encode, whole in plan:
                column = name
                value = row[index]
                values.append(str(value) if whole and type(value) is int else encode(value))
        except (DecodeError, ValueError) as exc:
            report.invalid += 1
            report.example("invalid", {"id": str(raw_id), "why": f"{column}: {exc}"})
            continue
        if cid in seen:
            splits.add(len(ids))
        seen.add(cid)
        ids.append(cid)
        if packed:
            # the keys in RESP from one template (no packing), the arguments packed at once
            # (one C call) less their array header
            digits = len(str(cid))
            if pairs:
                add_key_blob(pair_keys % (session_base + digits, cid, inventory_base + digits, cid))
                if packed_owned is not None:
                    # the rows come packed: the count ends the packed arguments
                    m, tail = packed_owned.get(cid, no_packed)
                    n = len(values) + 1
                    blob = pack((*values, str(m)))
                    add_arg_blob(blob[len(str(n)) + 3 :] + tail)
                    add_count(n + m)
                    continue
                items = owned.get(cid, no_rows)
                n = len(values) + len(items) + 1
                blob = pack((*values, str(len(items)), *items))
            else:
                add_key_blob(session_key % (session_base + digits, cid))
                n = len(values)
                blob = pack(tuple(values))
            add_arg_blob(blob[len(str(n)) + 3 :])  # *<n>\r\n
            add_count(n)
            continue
        starts.append(len(args))
        add_key(session_format % cid)
        add_args(values)
        if pairs:
            add_key(inventory_format % cid)
            items = owned.get(cid, no_rows)
            add_arg(str(len(items)))
            add_args(items)


# Rows encoded between two turns of the event loop.
ENCODE_SLICE = 25


async def encode_yielding(
    batch: Batch,
    columns: CharacterColumns,
    report: WarmupReport,
    *,
    pairs: bool,
    max_epoch: float,
    packed: bool = False,
) -> Encoded:
    """The batch's players, encoded :data:`ENCODE_SLICE` rows at a time with a turn of the
    event loop between slices: the next batch's PostgreSQL reads are sent (and their replies
    taken in) while this one is encoded, so PostgreSQL, Redis and this process work at the
    same time."""
    encoded = Encoded(2 if pairs else 1, packed=packed, characters=len(batch.characters))
    encoded.inventory_rows = batch.inventory_rows
    rows = batch.characters
    for start in range(0, len(rows), ENCODE_SLICE):
        encode_rows(
            encoded,
            rows[start : start + ENCODE_SLICE],
            batch.inventory,
            columns,
            report,
            max_epoch=max_epoch,
            packed_owned=batch.packed_inventory if packed else None,
        )
        await asyncio.sleep(0)
    return encoded
