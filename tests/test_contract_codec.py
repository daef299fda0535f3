"""Hash-field codecs: echoes_ops/contract/codec.py."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from uuid import UUID

import pytest

from echoes_ops.contract import codec
from echoes_ops.errors import DecodeError

NOW = 1_762_710_676.592  # the plan's example wall-clock heartbeat


class Level(IntEnum):
    HIGH = 3


# -- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (12, "12"),
        (-3, "-3"),
        (10**20, "100000000000000000000"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1762710676.592, "1762710676.592"),
        ("overpass", "overpass"),
        ("", ""),
        ("None", "None"),  # a string is stored as-is, even one that looks like a null
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([1, "x", True, None], '[1,"x",true,null]'),
        ((1, 2), "[1,2]"),
        ({}, "{}"),
        ([], "[]"),
        (Level.HIGH, "3"),
        (OrderedDict([("z", 1), ("a", 2)]), '{"z":1,"a":2}'),
    ],
)
def test_encode_value(value: object, expected: str) -> None:
    assert codec.encode_value(value) == expected


def test_encode_value_none_means_leave_out() -> None:
    assert codec.encode_value(None) is None


def test_encoded_float_round_trips_exactly() -> None:
    for value in (0.1, 1 / 3, 1e-300, 1762710676.5923457):
        assert float(codec.encode_value(value)) == value  # type: ignore[arg-type]


def test_json_keeps_non_ascii_as_is() -> None:
    encoded = codec.encode_value({"emoji": "🗡️", "name": "Épée"})
    assert encoded == '{"emoji":"🗡️","name":"Épée"}'
    assert "\\u" not in encoded  # type: ignore[operator]


def test_encoded_json_is_what_the_plan_reader_json_loads() -> None:
    value = {"defense": 3, "tags": ["a", "b"], "nested": {"ok": True}}
    assert json.loads(codec.encode_value(value)) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_value_refuses_non_finite_floats(value: float) -> None:
    with pytest.raises(DecodeError):
        codec.encode_value(value)
    with pytest.raises(DecodeError):
        codec.encode_float(value)


@pytest.mark.parametrize("value", [{"x": math.nan}, [math.inf], {"a": [-math.inf]}])
def test_encode_value_refuses_non_finite_floats_inside_json(value: object) -> None:
    with pytest.raises(DecodeError):
        codec.encode_value(value)


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", Decimal("1.5"), 1j])
def test_encode_value_refuses_unsupported_types(value: object) -> None:
    with pytest.raises(DecodeError, match=type(value).__name__):
        codec.encode_value(value)


@pytest.mark.parametrize("odd", [datetime(2025, 11, 9, 17, 52), UUID(int=1)])
def test_encode_value_outcome_does_not_depend_on_an_unrelated_null(odd: object) -> None:
    try:
        alone: str | None = codec.encode_value({"odd": odd})
    except DecodeError:
        alone = None
    try:
        beside_null: str | None = codec.encode_value({"odd": odd, "gone": None})
    except DecodeError:
        beside_null = None
    assert (alone is None) == (beside_null is None)


def test_encode_value_refuses_unsupported_types_inside_json() -> None:
    with pytest.raises(DecodeError):
        codec.encode_value({"a": {1, 2}})


def test_encode_mapping_encodes_every_field_and_drops_none() -> None:
    record = {
        "name": "Iron Sword",
        "equippable": True,
        "consumable": False,
        "weight": 2.5,
        "tier": 2,
        "stats": {"damage_min": 3},
        "tags": ["blade"],
        "emoji": "🗡️",
        "image_path": None,
        "level": Level.HIGH,
    }
    assert codec.encode_mapping(record) == {
        "name": "Iron Sword",
        "equippable": "true",
        "consumable": "false",
        "weight": "2.5",
        "tier": "2",
        "stats": '{"damage_min":3}',
        "tags": '["blade"]',
        "emoji": "🗡️",
        "level": "3",
    }


def test_encode_mapping_never_writes_the_string_none() -> None:
    encoded = codec.encode_mapping({"a": None, "b": 1})
    assert "None" not in encoded.values()
    assert "a" not in encoded


@pytest.mark.parametrize("bad", [math.nan, math.inf, object(), {1}])
def test_encode_mapping_refuses_what_encode_value_refuses(bad: object) -> None:
    with pytest.raises(DecodeError):
        codec.encode_mapping({"ok": 1, "bad": bad})


def test_encode_bool_and_json_helpers() -> None:
    assert codec.encode_bool(True) == "true"
    assert codec.encode_bool(False) == "false"
    assert codec.encode_json({"a": "é"}) == '{"a":"é"}'


# -- decoding ---------------------------------------------------------------------------

NULLS = [None, "", "   ", "None", "null", "none", "NULL", b"None", b""]


@pytest.mark.parametrize("raw", NULLS)
@pytest.mark.parametrize(
    "decoder",
    [
        codec.decode_str,
        codec.decode_int,
        codec.decode_float,
        codec.decode_bool,
        codec.decode_json,
        codec.decode_epoch,
    ],
)
def test_null_spellings_decode_to_none(decoder: object, raw: object) -> None:
    assert decoder(raw) is None  # type: ignore[operator]


def test_decode_str_strips_and_decodes_bytes() -> None:
    assert codec.decode_str(" overpass ") == "overpass"
    assert codec.decode_str("Épée".encode()) == "Épée"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (" 12 ", 12), ("12.0", 12), ("-3", -3), ("0", 0), (b"85", 85), ("1e3", 1000)],
)
def test_decode_int_tolerates_plan_spellings(raw: str | bytes, expected: int) -> None:
    result = codec.decode_int(raw)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("raw", ["12.5", "abc", "true", "nan", "inf", "1,000"])
def test_decode_int_rejects_non_whole_numbers(raw: str) -> None:
    with pytest.raises(DecodeError, match="whole number"):
        codec.decode_int(raw)


@pytest.mark.parametrize(("raw", "expected"), [("1.5", 1.5), ("12", 12.0), (b" -0.25 ", -0.25)])
def test_decode_float(raw: str | bytes, expected: float) -> None:
    assert codec.decode_float(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-inf"])
def test_decode_float_rejects_garbage_and_non_finite(raw: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode_float(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        (b"true", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        (" false ", False),
    ],
)
def test_decode_bool(raw: str | bytes, expected: bool) -> None:
    assert codec.decode_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "t", "on"])
def test_decode_bool_rejects_other_text(raw: str) -> None:
    with pytest.raises(DecodeError, match="boolean"):
        codec.decode_bool(raw)


def test_decode_json() -> None:
    assert codec.decode_json('{"north": "gas_station"}') == {"north": "gas_station"}
    assert codec.decode_json(b"[1, 2]") == [1, 2]
    assert codec.decode_json('"🔥"') == "🔥"


@pytest.mark.parametrize(("raw", "column"), [("{bad", 2), ("[1, 2", 6), ('{"a": }', 7)])
def test_decode_json_error_names_the_column(raw: str, column: int) -> None:
    with pytest.raises(DecodeError, match=rf"column {column}\b"):
        codec.decode_json(raw)


def test_encode_decode_json_round_trip() -> None:
    value = {"stats": {"defense": 3}, "tags": ["a", "é"], "ok": False}
    assert codec.decode_json(codec.encode_value(value)) == value


# -- epoch heartbeats -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["1762710676.592", b"1762710676.592", "1762710676", " 1762710000.5 "]
)
def test_decode_epoch_accepts_plausible_wall_clock(raw: str | bytes) -> None:
    value = codec.decode_epoch(raw, now=NOW)
    assert value is not None
    assert abs(value - float(raw)) < 1e-6


def test_decode_epoch_accepts_the_plausibility_floor_and_small_skew() -> None:
    assert codec.decode_epoch(str(codec.MIN_PLAUSIBLE_EPOCH), now=NOW) == codec.MIN_PLAUSIBLE_EPOCH
    slightly_ahead = NOW + 30
    assert codec.decode_epoch(repr(slightly_ahead), now=NOW) == slightly_ahead


@pytest.mark.parametrize(
    "raw",
    [
        "12345.67",  # asyncio loop.time(): seconds since boot
        "5234.123",
        "0",
        "-1",
        "999999999.9",  # just below the plausibility floor
        repr(NOW + codec.MAX_FUTURE_SKEW + 1),  # far future: broken clock
        "99999999999",
        "garbage",
        "nan",
        "inf",
        "2025-11-09T17:52:00Z",
    ],
)
def test_decode_epoch_returns_none_for_unknown(raw: str) -> None:
    assert codec.decode_epoch(raw, now=NOW) is None


def test_decode_epoch_uses_the_real_clock_by_default() -> None:
    import time

    current = time.time()
    assert codec.decode_epoch(repr(current)) == current
    assert codec.decode_epoch(repr(current + 10 * codec.MAX_FUTURE_SKEW)) is None
