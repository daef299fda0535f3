"""Ids that go into key and channel names: echoes_ops/contract/ids.py."""

from __future__ import annotations

import pytest

from echoes_ops.contract.ids import MAX_ID_LENGTH, check_character_id, check_name
from echoes_ops.errors import ConfigError, InvalidIdError


@pytest.mark.parametrize(
    "value",
    [
        "overpass",
        "gas_station",
        "worker-1",
        "spawn_manager",
        "a.b/c-d_e",
        "Ünïcödé",
        "🔥",
        "x" * MAX_ID_LENGTH,
    ],
)
def test_check_name_accepts_safe_ids(value: str) -> None:
    assert check_name(value) == value


def test_check_name_accepts_int_as_its_decimal_text() -> None:
    assert check_name(5) == "5"


def test_check_name_decodes_utf8_bytes() -> None:
    assert check_name(b"overpass") == "overpass"
    assert check_name("café".encode()) == "café"


@pytest.mark.parametrize(
    "bad_char",
    ["*", "?", "[", "]", "{", "}", ":", "\\", " ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f"],
)
def test_check_name_rejects_forbidden_characters_and_names_them(bad_char: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        check_name(f"a{bad_char}b", "location id")
    message = str(info.value)
    assert "location id" in message
    assert repr(bad_char) in message


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000", "\x85"])
def test_check_name_rejects_unicode_white_space(space: str) -> None:
    with pytest.raises(InvalidIdError):
        check_name(f"a{space}b")


@pytest.mark.parametrize("control", ["\x80", "\x9b", "\x9f"])
def test_check_name_rejects_c1_control_characters(control: str) -> None:
    # \x9b is the 8-bit CSI: it would inject terminal escapes into operator output
    with pytest.raises(InvalidIdError):
        check_name(f"a{control}b")


def test_check_name_rejects_empty() -> None:
    with pytest.raises(InvalidIdError, match="empty"):
        check_name("")


def test_check_name_rejects_too_long() -> None:
    with pytest.raises(InvalidIdError, match=str(MAX_ID_LENGTH)):
        check_name("x" * (MAX_ID_LENGTH + 1))


def test_check_name_rejects_non_utf8_bytes() -> None:
    with pytest.raises(InvalidIdError, match="UTF-8"):
        check_name(b"\xff\xfe", "item id")


@pytest.mark.parametrize("value", [True, False, None, 1.5, 2.0, ["a"], object()])
def test_check_name_rejects_non_string_types(value: object) -> None:
    with pytest.raises(InvalidIdError, match="must be a string"):
        check_name(value)


def test_invalid_id_error_is_a_config_and_value_error() -> None:
    with pytest.raises(InvalidIdError) as info:
        check_name("a:b")
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)


# -- character ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), (1, 1), (10**12, 10**12), ("5", 5), (" 42 ", 42), (b"7", 7), ("007", 7)],
)
def test_check_character_id_accepts_positive_integers(value: object, expected: int) -> None:
    assert check_character_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        "0",
        "-1",
        "+5",
        "5.0",
        "1e3",
        "abc",
        "",
        " ",
        "5 6",
        "５",  # fullwidth digit: isdigit() but not ASCII
        "²",
        True,
        False,
        None,
        5.0,
        1.5,
        b"\xff",
        [5],
    ],
)
def test_check_character_id_rejects_everything_else(value: object) -> None:
    with pytest.raises(InvalidIdError, match="character id"):
        check_character_id(value)
