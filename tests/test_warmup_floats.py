"""Warmup writes a float's text with orjson where orjson writes what ``repr`` writes
(``encoding.float_text``): the same bytes on the wire as before, proven here for the floats a
row can hold (epoch seconds, positions, anything in between) and for whole rows: the packed
players equal those built from ``repr``, the contract's float text (``codec.encode_float``),
whatever the rows hold. Pure logic: no server."""

from __future__ import annotations

import math
import random
import struct
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import hiredis
import pytest

from echoes_ops.contract import codec
from echoes_ops.errors import DecodeError
from echoes_ops.operations.warmup.encoding import (
    CharacterColumns,
    Encoded,
    encode_rows,
    float_text,
)
from echoes_ops.operations.warmup.report import WarmupReport

EDGES = [
    0.0, -0.0, 5.0, -5.0, 0.1, 1 / 3, 1e-4, -1e-4, 0.00010000000000000002, 1e-5, 9.99e-5,
    1e15, 1e16, 9999999999999998.0, 1.0000000000000002e16, 2.0**53, 1e17, 1e22, 1e300,
    5e-324, 2.2250738585072014e-308, 1796541541.498, 1.5e9, 123456789012345.67,
]  # fmt: skip


def _random_floats(count: int) -> list[float]:
    rng = random.Random(16)
    values: list[float] = []
    while len(values) < count:
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(bits):
            values.append(bits)  # any float at all (mostly outside orjson's range)
        values.append(rng.uniform(1e9, 2.2e9))  # epoch seconds
        values.append(rng.randrange(10**15, 22 * 10**14) / 1e6)  # from microseconds
        values.append(round(rng.uniform(-1e6, 1e6), rng.randrange(8)))  # positions, amounts
        values.append(10 ** rng.uniform(-6, 18) * rng.choice((1, -1)))  # every magnitude
        values.append(float(rng.randrange(10**17)))  # whole numbers
    return values


def test_float_text_is_repr():
    values = EDGES + _random_floats(300_000)
    wrong = [(v, float_text(v)) for v in values if float_text(v) != repr(v)]
    assert wrong == []


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_float_text_refuses_non_finite_numbers(value):
    with pytest.raises(DecodeError):
        float_text(value)


COLUMNS = ["id", "username", "location_id", "hp", "in_combat", "last_movement_time",
           "last_active_at"]  # fmt: skip
SEEN = datetime(2026, 12, 6, 9, 0, 0, 123456, tzinfo=UTC)


def _rows() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        (1, "ana", "overpass", 10, True, 1796550000.25, SEEN),
        (2, "Bjørk ✨", "old_market", 7, False, None, SEEN),  # non-ASCII, a missing value
        (3, "", "overpass", 0, None, 1e-5, SEEN),  # exponent forms orjson writes otherwise
        (4, "x", "overpass", 1, False, 1e17, datetime(2026, 12, 6, 9, 0, 0, 5)),  # naive
        (5, "y", "tunnels", 2, True, Decimal("12.5"), 1796550000.75),  # epoch seconds
        (6, "z", "tunnels", 3, True, 42, Decimal("1796550001")),  # whole number as float
        (7, "w", "tunnels", 4, False, SEEN, SEEN),  # a timestamp as a float field
        (8, "v", "tunnels", 5, False, -0.0, SEEN),
    ]
    rng = random.Random(7)
    for cid in range(9, 400):
        stamp = 1_600_000_000 + rng.randrange(10**8) / rng.choice((1, 10, 1000, 10**6))
        position = rng.choice(_random_floats(1))
        rows.append((cid, f"p{cid}", "overpass", cid, None, position, stamp))
    return rows


INVENTORY = {
    1: ['{"item_id":"pipe","quantity":1}', '{"item_id":"bandage","quantity":3}'],
    2: ['{"item_id":"m\u00e4p","note":"\u00fcber"}'],
    7: [],
    9: ['{"item_id":"x"}'] * 5,
}  # the others have none


def _text(value: Any, kind: str) -> str:
    """The contract's text of a field value, as warmup wrote it before orjson."""
    if value is None:
        return ""
    if kind == "float":
        if isinstance(value, datetime):
            return repr(value.timestamp())
        return codec.encode_float(float(value))
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


def _stamp(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


@pytest.mark.parametrize("pairs", [True, False], ids=["pairs", "sessions"])
def test_packed_players_are_the_bytes_repr_gives(pairs):
    columns = CharacterColumns.resolve(COLUMNS)
    # the encoders' order: location_id, username, hp, last_movement_time, in_combat
    order = [(2, "text"), (1, "text"), (3, "int"), (5, "float"), (4, "bool")]
    assert [name for _, name, _ in columns.fields] == [
        "location_id", "username", "hp", "last_movement_time", "in_combat"
    ]  # fmt: skip
    encoded = Encoded(2 if pairs else 1, packed=True)
    rows = _rows()
    report = WarmupReport(False, ["sessions"], 30, time.time())
    encode_rows(encoded, rows, INVENTORY, columns, report, max_epoch=time.time() + 86400)
    assert report.invalid == 0
    assert encoded.ids == [row[0] for row in rows]
    for n, row in enumerate(rows):
        cid = row[0]
        keys = [f"player:{cid}:session"] + ([f"player:{cid}:inventory"] if pairs else [])
        args = [repr(_stamp(row[6]))] + [_text(row[i], kind) for i, kind in order]
        if pairs:
            items = INVENTORY.get(cid, [])
            args += [str(len(items)), *items]
        expected = hiredis.pack_command((*keys, *args))
        assert (
            b"*%d\r\n" % (len(keys) + len(args)) + encoded.key_blobs[n] + encoded.arg_blobs[n]
            == expected
        ), row
        assert encoded.arg_counts[n] == len(args)
