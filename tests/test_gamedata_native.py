"""The yaml-rs reader (gamedata/nativeyaml.py) gives exactly what the game's loader
(``yaml.safe_load``, YAML 1.1) gives, or leaves the file to libyaml: never a different value,
never a different line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from echoes_ops.gamedata import fastyaml, nativeyaml
from echoes_ops.gamedata.loader import gamedata_files, validate_gamedata
from tests.conftest import BUNDLED_GAMEDATA

# Plain scalars YAML 1.1 and 1.2 read differently, and their neighbours.
SPELLINGS = [
    *[
        "y",
        "Y",
        "n",
        "N",
        "yes",
        "Yes",
        "YES",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "true",
        "True",
        "TRUE",
        "tRUE",
        "false",
        "False",
        "FALSE",
    ],
    *[
        "null",
        "Null",
        "NULL",
        "nULL",
        "~",
        "-",
        "--",
        ".",
        "..",
        "...",
        "=",
        "<<",
        "?",
        ":",
        "@",
        "`",
        "|x",
        ">x",
    ],
    *[
        "0",
        "00",
        "010",
        "-010",
        "+010",
        "08",
        "0o7",
        "0O7",
        "0o17",
        "-0o7",
        "0x1F",
        "0X1F",
        "0x_1F",
        "-0x1f",
        "0b101",
        "-0b1",
        "0B1",
        "0b",
    ],
    *[
        "1",
        "-1",
        "+1",
        "12",
        "1_000",
        "1__0",
        "_1",
        "1_",
        "1,000",
        "1:30",
        "-1:30",
        "190:20:30",
        "1:30.5",
        "1:60",
        "99999999999999999999",
    ],
    *[
        "1.",
        "-1.",
        "+1.5",
        ".5",
        "-.5",
        "+.5",
        "1.5",
        "1.50",
        "1.5e3",
        "1.5e+3",
        "1.5E+3",
        "1.5e-3",
        "1e3",
        "1e+3",
        "1E3",
        "1.e3",
        ".5e3",
        "1.0e3",
    ],
    *[
        "0.0",
        "-0.0",
        "+0.0",
        "0.5",
        "00.5",
        "1_0.5",
        ".inf",
        ".Inf",
        ".INF",
        ".iNF",
        "-.inf",
        "+.inf",
        "inf",
        "-inf",
        ".nan",
        ".NaN",
        ".NAN",
    ],
    *[
        "+.nan",
        "nan",
        "NaN",
        "2001-12-14",
        "2001-12-14t21:59:43.10-05:00",
        "2001-12-14",
        "21:59:43.10",
        "-5",
    ],
    *[
        "bench_item_0",
        "item_1_2",
        "Sector\\",
        "007",
        "a0",
        "0a",
        "1a",
        "1e",
        "1e3x",
        "0x",
        "0o",
        "0b2",
        "0xG",
    ],
    "'yes'",
    '"010"',
    "'1e3'",
    '"1_000"',
    "''",
    '""',
    '"\\t"',
    "'~'",
    "!!str 5",
    "!!int '5'",
    "&a 5",
    "x # comment",
    "'it''s'",
    '"caf\\u00e9 \\U0001F529 \\x41 \\/"',
    "[1, yes, 010]",
    "{a: 1, b: no}",
    "b: c",
    "'x' y",
    "[1, 2",
    "{a",
    "a]",
    "1 2",
    "- 5",
    "1.5.5",
    "-1.5",
    "12.25",
]
# every capitalisation of the words either version reads as a boolean or null
for _word in ("true", "false", "null", "yes", "no", "on", "off", "y", "n", "inf", "nan"):
    _variants = {""}
    for _char in _word:
        _variants = {v + c for v in _variants for c in {_char.lower(), _char.upper()}}
    SPELLINGS += sorted(_variants) + ["." + v for v in sorted(_variants)]


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 and 1.0 and True differ here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _native(text: str) -> list[Any] | None:
    """The entries nativeyaml gives, or None when it leaves the file to libyaml."""
    try:
        return [item[1] for item in nativeyaml.read_top(text) if item[0] == "entry"]
    except fastyaml.Unsupported:
        return None


def _documents(spelling: str) -> list[str]:
    return [
        f"items:\n- id: x\n  value: {spelling}\n",
        f"items:\n  - value: {spelling}\n    other: 1\n",
        f"items:\n- {spelling}\n- id: y\n",
        f"items:\n- id: x\n  {spelling}: 1\n",
        f"items:\n- id: x\n  list: [{spelling}]\n  map: {{k: {spelling}}}\n",
        f"items:\n- id: x\n  nested:\n    deeper:\n    - {spelling}\n",
    ]


def test_the_reader_is_in_use() -> None:
    assert nativeyaml.AVAILABLE
    assert _native("items:\n- id: x\n  weight: 1.5\n  tier: 2\n") == [
        {"id": "x", "weight": 1.5, "tier": 2}
    ]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_reads_as_the_games_loader_reads_it_or_goes_to_libyaml(
    spelling: str,
) -> None:
    for text in _documents(spelling):
        try:
            expected = (yaml.safe_load(text) or {}).get("items")
        except yaml.YAMLError:
            assert _native(text) is None, text  # invalid for the game: libyaml words it
            continue
        got = _native(text)
        if got is not None:
            assert _same(got, expected), (text, got, expected)


def test_the_bundled_world_is_read_natively_and_identically() -> None:
    for path in gamedata_files(BUNDLED_GAMEDATA):
        text = path.read_text(encoding="utf-8")
        native = list(nativeyaml.read_top(text))  # no Unsupported: the fast path is taken
        assert native == list(fastyaml.read_top(text)), path.name


LAYOUTS = {
    "column 0": "items:\n- id: a\n  tags:\n  - x\n- id: b\n",
    "indented": "# a world\nitems:\n\n  # first\n  - id: a\n    tags:\n    - x\n\n  - id: b\nnpcs:\n",
    "block scalar": "items:\n- id: a\n  description: |\n    text\n    - not an entry\n- id: b\n",
    "comments": "items: # the items\n- id: a # one\n# between\n- id: b\n",
    "two sections": "locations:\n- id: l\nitems:\n- id: a\n- id: b\nnpcs: # none yet\n",
    "flow entries": "items:\n- {id: a}\n- [1, 2]\n- plain\n",
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_entry_lines_are_libyamls(layout: str) -> None:
    text = LAYOUTS[layout]
    assert list(nativeyaml.read_top(text)) == list(fastyaml.read_top(text))


@pytest.mark.parametrize(
    "text",
    [
        "items:\n-\n  id: a\n",  # the entry starts on the next line
        "items:\n- # note\n  id: a\n",
        "items: []\n",
        "items:\n  id: a\n",  # a mapping, not a list
        "---\nitems:\n- id: a\n",
        "items:\n- id: a\n  id: b\n",  # a repeated key
        "items:\n- id: a\nitems:\n- id: b\n",
        "- id: a\n",
        "items:\n- id: a\n  name: 'unterminated\n- id: b\n",
        "",
        "# only a comment\n",
    ],
)
def test_what_the_cut_cannot_follow_goes_to_libyaml(text: str) -> None:
    assert _native(text) is None


def test_a_world_with_both_kinds_of_file_validates_as_before(tmp_path: Path) -> None:
    """One file the native reader takes, one it leaves to libyaml (a 1.1-only boolean):
    the same models and the same file:line messages either way."""
    (tmp_path / "a.yaml").write_text(
        "items:\n- id: knife\n  name: Knife\n  description: Sharp.\n  type: weapon\n"
        "  weight: 0.5\n  volume: 0.2\n  emoji: x\n  image_path: /k.png\n"
        "  equippable: true\n  consumable: false\n  tier: 1\n"
    )
    (tmp_path / "b.yaml").write_text(
        "items:\n- id: rope\n  name: Rope\n  description: Long.\n  type: tool\n"
        "  weight: 1\n  volume: 1\n  emoji: x\n  image_path: /r.png\n"
        "  equippable: yes\n  consumable: no\n  tier: 6\n"
    )
    assert _native((tmp_path / "a.yaml").read_text()) is not None
    assert _native((tmp_path / "b.yaml").read_text()) is None
    result = validate_gamedata(tmp_path)
    assert result.problems == ["b.yaml:12: item 'rope': 'tier' must be between 1 and 5, got 6"]


def test_reading_leaves_the_cycle_collector_as_it_found_it(tmp_path: Path) -> None:
    import gc

    from echoes_ops.gamedata import WorldCache

    (tmp_path / "bad.yaml").write_text("items:\n- id: a\n  tier: 9\n")
    assert gc.isenabled()
    assert validate_gamedata(BUNDLED_GAMEDATA).ok
    assert not validate_gamedata(tmp_path).ok
    cache = WorldCache(tmp_path / "cache")
    validate_gamedata(BUNDLED_GAMEDATA, cache=cache)
    cached = validate_gamedata(BUNDLED_GAMEDATA, cache=cache)
    assert cached.world is not None
    assert cached.world.data().items  # read back from the cache
    assert gc.isenabled()
    gc.disable()
    try:
        validate_gamedata(BUNDLED_GAMEDATA)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_yaml11_table_is_pyyamls() -> None:
    """yaml-rs's checks use a copy of PyYAML's implicit resolvers (so that they need not
    import PyYAML): the same tags, patterns and flags, for the same first characters, in
    the same order."""
    from echoes_ops.gamedata import yaml11
    from echoes_ops.gamedata.yamlload import PreciseLoader

    def shape(table: dict[Any, list[tuple[str, Any]]]) -> list[Any]:
        return [
            (first, [(tag, rule.pattern, rule.flags) for tag, rule in rules])
            for first, rules in table.items()
        ]

    assert shape(yaml11.resolver_table()) == shape(PreciseLoader.yaml_implicit_resolvers)
