"""Warmup's players packed in the wire protocol as they are encoded (one server): a call cut
from the packed bytes is byte for byte the command the plain form builds and hiredis packs,
whatever the rows hold (missing values, non-ASCII text, a character listed twice, empty
inventories), in either mode. Pure logic: no server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import hiredis
import pytest

from echoes_ops.operations.warmup.encoding import (
    CharacterColumns,
    Encoded,
    PackedHead,
    encode_rows,
    headers,
)
from echoes_ops.operations.warmup.report import WarmupReport

COLUMNS = ["id", "username", "location_id", "hp", "level", "last_movement_time", "last_active_at"]


def _rows() -> list[tuple[Any, ...]]:
    seen = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    return [
        (1, "ana", "overpass", 10, 2, 1796550000.25, seen),
        (2, "Bjørk ✨", "old_market", 7, None, None, seen),  # non-ASCII, missing values
        (3, "", "overpass", 0, 1, 1796550000.0, seen),  # an empty name: no value
        (1, "ana", "overpass", 11, 2, 1796550001.5, seen),  # listed twice: a call ends before
        (123456789, "long id", "tunnels", 99, 50, 1.5e9, seen),
        (-4, "bad id", "overpass", 1, 1, None, seen),  # invalid: left out
    ]


INVENTORY = {
    1: ['{"item_id":"pipe","quantity":1}', '{"item_id":"bandage","quantity":3}'],
    2: ['{"item_id":"m\u00e4p","note":"\u00fcber"}'],
    123456789: ['{"item_id":"x"}'] * 5,
}  # character 3 has none


@pytest.mark.parametrize("pairs", [True, False], ids=["pairs", "sessions"])
@pytest.mark.parametrize("step", [1, 2, 3, 100])
def test_packed_calls_are_the_plain_commands_packed(pairs, step):
    columns = CharacterColumns.resolve(COLUMNS)
    width = 2 if pairs else 1
    plain, packed = Encoded(width), Encoded(width, packed=True)
    for encoded in (plain, packed):
        report = WarmupReport(False, ["sessions"], 30, time.time())
        encode_rows(encoded, _rows(), INVENTORY, columns, report, max_epoch=time.time() + 86400)
        assert report.invalid == 1
    assert packed.ids == plain.ids == [1, 2, 3, 1, 123456789]
    assert packed.keys == packed.args == []  # the packed form keeps bytes only
    header = ("0", "1.0", "2.0", "1800", "600", "1", "5", "pairs" if pairs else "sessions", "0",
              "username", "location_id", "hp", "level", "last_movement_time")  # fmt: skip
    for head in headers(header):
        begin = 0
        while begin < len(plain.ids):
            command, end = plain.call("f" * 40, head, begin, step)
            payload, packed_end = packed.packed_call(PackedHead.of("f" * 40, head), begin, step)
            assert packed_end == end
            assert payload == hiredis.pack_command(command)
            begin = end
    # the repeated character starts a new call: a call never holds one player twice
    assert packed.packed_call(PackedHead.of("f" * 40, header), 0, 100)[1] == 3
