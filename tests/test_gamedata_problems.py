"""Gamedata validation reports every problem, not just the first: each with its file and
line, ``validate_gamedata`` never raises, ``load_gamedata`` raises with them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoes_ops.errors import ConfigError, GamedataError
from echoes_ops.gamedata import load_gamedata, validate_gamedata
from tests.gamedata_world import _problems, _write_world

BROKEN_WORLD = """\
locations:
  - id: start
    name: Start
    description: The start.
    exits: {north: nowhere, up: start}
    danger_level: 11
    image_path: /img/start.png
    x: 1.0
    y: 2
    nmae: typo
    npcs:
      - {id: ghost, chance: 1.5}
    interactables:
      - id: box
        name: Box
        actions: [search]
        loot: [unobtainium]
  - id: bad id
    name: Bad
    description: Bad.
    exits: {}
    danger_level: 0
    image_path: /img/bad.png
    x: 0
    y: 0
"""

BROKEN_ITEMS = """\
items:
  - id: knife
    name: Knife
    description: Sharp.
    type: weapon
    weight: heavy
    volume: 0.1
    emoji: 🔪
    image_path: /img/knife.png
    equippable: true
    consumable: false
    tier: 0
locations:
  - id: start
    name: Again
    description: A second start.
    exits: {}
    danger_level: 1
    image_path: /img/again.png
    x: 0
    y: 0
"""

BROKEN_NPCS = """\
npcs:
  - id: rat
    name: Rat
    description: A rat.
    level: 1
    hp: 5
    damage_min: 1
    damage_max: 2
    hostile: true
    hostile: false
"""

BROKEN_EXPECTED = [
    ("a_world.yaml", 10, "location 'start': unknown field 'nmae'"),
    ("a_world.yaml", 12, "location 'start' npc spawn: 'chance' must be between 0 and 1, got 1.5"),
    ("a_world.yaml", 6, "location 'start': 'danger_level' must be between 0 and 10, got 11"),
    ("a_world.yaml", 18, "location id 'bad id' contains ' '"),
    ("b_items.yaml", 6, "item 'knife': 'weight' must be a number, got 'heavy'"),
    ("b_items.yaml", 12, "item 'knife': 'tier' must be between 1 and 5, got 0"),
    ("b_items.yaml", 14, "duplicate location id 'start' (first at a_world.yaml:2)"),
    ("c_npcs.yaml", 10, "YAML syntax error: duplicate key 'hostile'"),
    ("a_world.yaml", 2, "location 'start': exit 'north' leads to unknown location 'nowhere'"),
    ("a_world.yaml", 2, "location 'start': exit leads to itself"),
    ("a_world.yaml", 2, "location 'start': unknown npc 'ghost'"),
    ("a_world.yaml", 2, "location 'start': interactable 'box' drops unknown item 'unobtainium'"),
]


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    (tmp_path / "a_world.yaml").write_text(BROKEN_WORLD, encoding="utf-8")
    (tmp_path / "b_items.yaml").write_text(BROKEN_ITEMS, encoding="utf-8")
    (tmp_path / "c_npcs.yaml").write_text(BROKEN_NPCS, encoding="utf-8")
    return tmp_path


def test_every_problem_is_reported_with_its_file_and_line(broken_root: Path) -> None:
    problems = _problems(broken_root)
    for file, line, message in BROKEN_EXPECTED:
        prefix = f"{file}:{line}: "
        assert any(p.startswith(prefix) and message in p for p in problems), (prefix, message)
    assert len(problems) == len(BROKEN_EXPECTED)


def test_validate_never_raises_and_returns_no_data(broken_root: Path) -> None:
    result = validate_gamedata(broken_root)
    assert not result.ok
    assert result.data is None


def test_load_gamedata_raises_with_every_problem(broken_root: Path) -> None:
    with pytest.raises(GamedataError) as info:
        load_gamedata(broken_root)
    error = info.value
    assert error.problems == validate_gamedata(broken_root).problems
    assert len(error.problems) == len(BROKEN_EXPECTED)
    assert f"{len(BROKEN_EXPECTED)} problems" in str(error)
    assert error.problems[0] in str(error)
    assert isinstance(error, ConfigError)


def test_load_gamedata_single_problem_message(tmp_path: Path) -> None:
    _write_world(tmp_path, items=("tier: 1", "tier: 9"))
    with pytest.raises(GamedataError, match=r"\(1 problem; first: items.yaml:12: "):
        load_gamedata(tmp_path)
