"""Fast gamedata reading: the libyaml reader agrees with the precise loader (values and
lines), problems found without lines are reported with the precise lines, and the cache of
validated worlds (hit, miss, damaged files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from echoes_ops.gamedata import WorldCache, fastyaml, reading, validate_gamedata
from echoes_ops.gamedata.cache import HEADER_SIZE, WORLD_SUFFIX
from echoes_ops.gamedata.loader import load_world
from echoes_ops.gamedata.yamlload import LineDict, load_yaml_text
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.gamedata_world import NPCS, _write_world


def _fast(text: str, *, lines: bool = False) -> Any:
    """The document the fast reader sees, assembled back into one value."""
    document: dict[str, Any] = LineDict() if lines else {}
    current: list[Any] = []
    for item in fastyaml.read_top(text, lines=lines):
        if item[0] == "root":
            return item[1]
        if item[0] == "value":
            document[item[1]] = item[3]
        elif item[0] == "list":
            current = document[item[1]] = []
        elif item[0] == "entry":
            current.append(item[1])
    return document


def _lines(value: Any, out: list[Any]) -> list[Any]:
    """Every mapping's line and key lines, depth first."""
    if isinstance(value, LineDict):
        out.append((value.line, sorted(value.key_lines.items())))
    if isinstance(value, dict):
        for item in value.values():
            _lines(item, out)
    elif isinstance(value, list):
        for item in value:
            _lines(item, out)
    return out


# -- the fast reader agrees with the precise loader ------------------------------------

SCALARS = """\
items:
  - plain: text, with commas:and colons
    booleans: [yes, No, on, OFF, y, true, FALSE]
    numbers: [012, 0x1f, 0b11, 1_000, '1e3', 1e3, 1.5e+3, 1.5e3, .inf, -.Inf, 1:30, +7, -0.0]
    nothing: [~, null, NULL, '']
    empty:
    dates: [2001-12-14, 2001-12-14t21:59:43.10-05:00]
    quoted: ["\\U0001F529 and \\t", 'it''s', "12"]
    keys: {1: one, 1.5: half, true: yes, null_key: x}
    folded: >
      folded
      text
    literal: |
      kept
      lines
    multi: a plain scalar
      over two lines
    flow: {a: [1, {b: c}], d: []}
"""


def test_the_fast_reader_gives_the_precise_loader_s_values() -> None:
    precise = load_yaml_text(SCALARS)
    assert _fast(SCALARS) == precise
    assert _fast(SCALARS, lines=True) == precise


@pytest.mark.parametrize("path", sorted(BUNDLED_GAMEDATA.glob("*.yaml")), ids=lambda p: p.name)
def test_the_fast_reader_gives_the_precise_loader_s_lines(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    precise = load_yaml_text(text)
    fast = _fast(text, lines=True)
    assert fast == precise
    assert _lines(list(fast.values()), []) == _lines(list(precise.values()), [])


def test_lines_agree_on_every_layout() -> None:
    text = (
        "# heading\n\nitems:\n- id: a\n  stats: {x: 1,\n    y: 2}\n\n  tags:\n  - t\n"
        "-   id: b   # comment\n    nested:\n      deeper: {k: v}\n"
        "- {id: c, name: flow}\n- ? id\n  : d\n"
    )
    fast, precise = _fast(text, lines=True), load_yaml_text(text)
    assert fast == precise
    assert _lines(list(fast.values()), []) == _lines(list(precise.values()), [])


@pytest.mark.parametrize(
    "text",
    [
        "items:\n  - &a {id: x}\n  - *a\n",  # anchors and aliases
        "base: &b {x: 1}\nitems:\n  - <<: *b\n    id: y\n",  # merge keys
        "items:\n  - !!str 12\n",  # explicit tags
        "items:\n  - id: x\n    id: y\n",  # a repeated key
        "items: []\nitems: []\n",  # a repeated section
        "items:\n  - {1: a, '1': b}\n",  # keys equal as strings
        "items:\n  - {[1]: a}\n",  # a complex key
        "items:\n  - {~: a}\n",  # a null key
        "%YAML 1.1\n---\nitems: []\n",  # a directive
        "items: []\n---\nnpcs: []\n",  # two documents
        "items:\n  - id: 'unterminated\n",  # a syntax error
    ],
)
def test_what_the_fast_reader_leaves_to_the_precise_loader(text: str) -> None:
    with pytest.raises(fastyaml.Unsupported):
        _fast(text)


def test_yaml_left_to_the_precise_loader_still_loads(tmp_path: Path) -> None:
    _write_world(tmp_path)
    (tmp_path / "more.yaml").write_text(
        "base: &crate {name: Crate, actions: [search], loot: [scrap_metal]}\n", encoding="utf-8"
    )
    problems = validate_gamedata(tmp_path).problems
    assert problems == ["more.yaml:1: unknown section 'base' (expected locations, items, npcs)"]


# -- lines: found without them, reported with them -------------------------------------


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str]]:
    """The files each reading of the folder reads with lines, in order."""
    seen: list[frozenset[str]] = []
    real = reading.Reading

    def spy(files: list[Path], names: list[str], with_lines: frozenset[str]) -> Any:
        seen.append(with_lines)
        return real(files, names, with_lines)

    monkeypatch.setattr(reading, "Reading", spy)
    return seen


def test_a_problem_found_without_lines_is_reported_at_the_precise_line(
    tmp_path: Path, passes: list[frozenset[str]]
) -> None:
    root = _write_world(tmp_path, items=("tier: 1", "tier: 9"))
    problems = validate_gamedata(root).problems
    assert problems == ["items.yaml:12: item 'scrap_metal': 'tier' must be between 1 and 5, got 9"]
    # first read without lines, then only the file the message names, with lines
    assert passes == [frozenset(), frozenset({"items.yaml"})]


def test_a_duplicate_in_another_file_is_read_again_for_the_first_definition_s_line(
    tmp_path: Path, passes: list[frozenset[str]]
) -> None:
    root = _write_world(tmp_path)
    (root / "z_more.yaml").write_text(NPCS.replace("npcs:\n", "npcs:\n\n\n"), encoding="utf-8")
    problems = validate_gamedata(root).problems
    assert problems == ["z_more.yaml:4: duplicate npc id 'raider' (first at npcs.yaml:2)"]
    assert passes[-1] == frozenset({"z_more.yaml", "npcs.yaml"})


def test_a_valid_world_read_fast_keeps_each_entry_s_line(tmp_path: Path) -> None:
    data = validate_gamedata(_write_world(tmp_path)).data
    assert data is not None
    assert str(data.locations["gas_station"].source) == "world.yaml:18"
    assert str(data.npcs["raider"].source) == "npcs.yaml:2"


# -- the cache --------------------------------------------------------------------------


def _cache(tmp_path: Path) -> WorldCache:
    return WorldCache(tmp_path / "cache")


def _worlds(cache: WorldCache) -> list[Path]:
    return sorted(cache.directory.glob(f"*{WORLD_SUFFIX}"))


def _no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the files were parsed again")

    monkeypatch.setattr(reading, "Reading", refuse)


def test_an_unchanged_world_comes_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    first = validate_gamedata(root, cache=cache)
    assert first.ok
    assert len(_worlds(cache)) == 1
    _no_reading(monkeypatch)
    again = validate_gamedata(root, cache=cache)
    assert again.ok
    assert again.files == first.files
    assert again.world is not None
    assert first.world is not None
    assert again.world.counts == first.world.counts
    assert again.data == first.data
    assert again.data is not None
    assert first.data is not None
    assert [str(x.source) for x in again.data.locations.values()] == [
        str(x.source) for x in first.data.locations.values()
    ]


def test_the_bundled_world_round_trips_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path)
    first = load_world(BUNDLED_GAMEDATA, cache=cache).data()
    _no_reading(monkeypatch)
    assert load_world(BUNDLED_GAMEDATA, cache=cache).data() == first


def test_a_changed_file_misses_the_cache(tmp_path: Path) -> None:
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    assert validate_gamedata(root, cache=cache).ok
    path = root / "world.yaml"
    path.write_text(path.read_text().replace("name: Overpass", "name: Bridge"))
    data = validate_gamedata(root, cache=cache).data
    assert data is not None
    assert data.locations["overpass"].name == "Bridge"
    assert len(_worlds(cache)) == 2


def test_an_invalid_world_is_not_cached(tmp_path: Path) -> None:
    root, cache = _write_world(tmp_path / "world", items=("tier: 1", "tier: 9")), _cache(tmp_path)
    for _ in range(2):
        problems = validate_gamedata(root, cache=cache).problems
        assert problems == [
            "items.yaml:12: item 'scrap_metal': 'tier' must be between 1 and 5, got 9"
        ]
    assert _worlds(cache) == []


@pytest.mark.parametrize(
    "damage",
    ["garbage header", "truncated", "flipped body byte", "empty", "other key"],
)
def test_a_damaged_cache_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    expected = validate_gamedata(root, cache=cache).data
    [path] = _worlds(cache)
    raw = path.read_bytes()
    if damage == "garbage header":
        path.write_bytes(b"not json" + raw[8:])
    elif damage == "truncated":
        path.write_bytes(raw[:-10])
    elif damage == "flipped body byte":
        body = bytearray(raw)
        body[HEADER_SIZE + 20] ^= 0x01
        path.write_bytes(bytes(body))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(raw.replace(path.stem.encode(), b"0" * len(path.stem), 1))
    result = validate_gamedata(root, cache=cache)
    assert result.ok
    assert result.data == expected


def test_an_unwritable_cache_folder_only_costs_time(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    cache = WorldCache(tmp_path / "file" / "cache")
    root = _write_world(tmp_path / "world")
    assert validate_gamedata(root, cache=cache).ok
    assert validate_gamedata(root, cache=cache).ok


def test_cache_files_are_private_and_written_whole(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert validate_gamedata(_write_world(tmp_path / "world"), cache=cache).ok
    assert cache.directory.stat().st_mode & 0o077 == 0
    # no temporary file left behind: the world and the folder's stat index
    paths = sorted(cache.directory.iterdir(), key=lambda p: p.suffix)
    assert [p.suffix for p in paths] == [".stat", WORLD_SUFFIX]
    assert all(p.stat().st_mode & 0o077 == 0 for p in paths)


def test_only_the_newest_worlds_are_kept(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    for level in range(6):
        root = _write_world(
            tmp_path / "world", world=("danger_level: 1\n", f"danger_level: {level}\n")
        )
        result = validate_gamedata(root, cache=cache)
        assert result.world is not None
        assert result.world.key is not None
        assert cache.lookup(result.world.key) is not None  # the newest is always kept
    assert len(_worlds(cache)) == 4


def test_a_file_that_cannot_be_read_still_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    real = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "items.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    real_bytes = Path.read_bytes

    def deny_bytes(self: Path) -> bytes:
        if self.name == "items.yaml":
            raise PermissionError(13, "Permission denied")
        return real_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", deny_bytes)
    problems = validate_gamedata(root, cache=cache).problems
    assert problems[0] == "items.yaml:1: cannot read file: Permission denied"


def test_yaml_problem_lines_do_not_depend_on_the_cache(tmp_path: Path) -> None:
    root = _write_world(tmp_path / "world")
    (root / "broken.yaml").write_text("items:\n  - id: x\n   name: bad indent\n")
    with_cache = validate_gamedata(root, cache=_cache(tmp_path)).problems
    assert with_cache == validate_gamedata(root).problems
    assert with_cache[0].startswith("broken.yaml:3: YAML syntax error")


def test_validate_says_the_same_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHOES_OPS_CACHE_DIR", str(tmp_path / "cache"))
    root = str(_write_world(tmp_path / "world"))
    first = cli("validate", "--gamedata", root)
    assert first.code == 0
    assert first.stdout == "ok: 2 locations, 1 items, 1 npcs in 3 files\n"
    assert len(list((tmp_path / "cache").glob("*.world"))) == 1
    _no_reading(monkeypatch)
    again = cli("validate", "--gamedata", root)
    assert (again.code, again.stdout, again.stderr) == (first.code, first.stdout, first.stderr)
    as_json = cli("validate", "--gamedata", root, "--json")
    assert '"counts": {' in as_json.stdout


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHOES_OPS_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = str(_write_world(tmp_path / "world"))
    assert cli("validate", "--gamedata", root).code == 0
    assert not (tmp_path / "xdg").exists()
    monkeypatch.delenv("ECHOES_OPS_CACHE_DIR")
    assert cli("validate", "--gamedata", root).code == 0
    assert len(list((tmp_path / "xdg" / "echoes-ops").glob("*.world"))) == 1
