"""Gamedata loading and validation: echoes_ops/gamedata/loader.py (the bundled world:
test_gamedata_bundled.py; every problem of a broken world: test_gamedata_problems.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoes_ops.errors import ConfigError, GamedataError
from echoes_ops.gamedata import GameData, load_gamedata, validate_gamedata
from tests.gamedata_world import ITEMS, NPCS, WORLD, _problems, _write_world


def test_small_world_is_valid(tmp_path: Path) -> None:
    result = validate_gamedata(_write_world(tmp_path))
    assert result.problems == []
    assert result.data is not None
    assert result.data.counts() == {"locations": 2, "items": 1, "npcs": 1}
    overpass = result.data.locations["overpass"]
    assert overpass.exits == {"north": "gas_station"}
    assert str(overpass.source) == "world.yaml:2"
    assert result.data.items["scrap_metal"].emoji == "🔩"
    assert result.data.npcs["raider"].loot[0].max == 2
    assert sorted(Path(f).name for f in result.files) == ["items.yaml", "npcs.yaml", "world.yaml"]


def test_load_gamedata_returns_the_validated_data(tmp_path: Path) -> None:
    data = load_gamedata(_write_world(tmp_path))
    assert isinstance(data, GameData)
    assert data == validate_gamedata(tmp_path).data
    assert data.root == str(tmp_path)


SINGLE_DEFECTS = [
    # out-of-range numbers
    (
        "world",
        "danger_level: 1\n",
        "danger_level: 11\n",
        "world.yaml:6",
        "'danger_level' must be between 0 and 10, got 11",
    ),
    ("items", "tier: 1", "tier: 0", "items.yaml:12", "'tier' must be between 1 and 5, got 0"),
    (
        "world",
        "chance: 0.3",
        "chance: 1.5",
        "world.yaml:17",
        "'chance' must be between 0 and 1, got 1.5",
    ),
    (
        "npcs",
        "chance: 0.5",
        "chance: -0.1",
        "npcs.yaml:12",
        "'chance' must be between 0 and 1, got -0.1",
    ),
    ("npcs", "level: 3", "level: 101", "npcs.yaml:5", "'level' must be between 1 and 100, got 101"),
    ("items", "weight: 1.0", "weight: -1", "items.yaml:6", "'weight' must be at least 0, got -1"),
    # wrong types
    (
        "world",
        "danger_level: 1\n",
        "danger_level: high\n",
        "world.yaml:6",
        "'danger_level' must be a whole number, got 'high'",
    ),
    ("world", "x: 5.0", "x: '5.0'", "world.yaml:8", "'x' must be a number, got '5.0'"),
    ("world", "x: 5.0", "x: true", "world.yaml:8", "'x' must be a number, got True"),
    ("world", "x: 5.0", "x: .nan", "world.yaml:8", "'x' must be a number"),
    (
        "items",
        "equippable: false",
        "equippable: 'no'",
        "items.yaml:10",
        "'equippable' must be true or false, got 'no'",
    ),
    ("npcs", "hp: 30", "hp: 1.5", "npcs.yaml:6", "'hp' must be a whole number, got 1.5"),
    ("npcs", "hp: 30", "hp: true", "npcs.yaml:6", "'hp' must be a whole number, got True"),
    ("world", "tags: [start]", "tags: start", "world.yaml:10", "'tags' must be a list"),
    ("world", "tags: [start]", "tags: [1]", "world.yaml:10", "tags must be strings, got 1"),
    (
        "world",
        "exits: {north: gas_station}",
        "exits: [north]",
        "world.yaml:5",
        "'exits' must be a mapping",
    ),
    (
        "world",
        "{north: gas_station}",
        "{north: 5, south: gas_station}",
        "world.yaml:5",
        "exit 'north' must name a location id, got 5",
    ),
    ("world", "name: Overpass", "name: ''", "world.yaml:3", "'name' must be a non-empty string"),
    (
        "items",
        "stats: {}",
        "stats: {defense: high}",
        "items.yaml:13",
        "'stats.defense' must be a finite number, got 'high'",
    ),
    ("items", "effects: {}", "effects: [1]", "items.yaml:14", "'effects' must be a mapping"),
    # missing required fields (reported at the start of the entry)
    (
        "world",
        "    description: A looted gas station.\n",
        "",
        "world.yaml:18",
        "location 'gas_station': missing required field 'description'",
    ),
    (
        "items",
        "    emoji: 🔩\n",
        "",
        "items.yaml:2",
        "item 'scrap_metal': missing required field 'emoji'",
    ),
    (
        "npcs",
        "    hostile: true\n",
        "",
        "npcs.yaml:2",
        "npc 'raider': missing required field 'hostile'",
    ),
    (
        "world",
        "      - {id: raider, chance: 0.3}",
        "      - {id: raider}",
        "world.yaml:17",
        "missing required field 'chance'",
    ),
    # unknown fields (typos), reported at the typo's line
    ("items", "stats: {}", "stast: {}", "items.yaml:13", "unknown field 'stast'"),
    ("npcs", "xp_reward: 15", "xp_rewrad: 15", "npcs.yaml:10", "unknown field 'xp_rewrad'"),
    ("world", "chance: 0.3}", "chance: 0.3, odds: 1}", "world.yaml:17", "unknown field 'odds'"),
    # other content rules
    (
        "world",
        "{north: gas_station}",
        "{north: gas_station, sideways: gas_station}",
        "world.yaml:5",
        "unknown exit direction 'sideways'",
    ),
    ("world", "actions: [search]", "actions: [dance]", "world.yaml:14", "unknown action 'dance'"),
    ("items", "type: material", "type: gizmo", "items.yaml:5", "unknown item type 'gizmo'"),
    (
        "npcs",
        "damage_min: 2",
        "damage_min: 9",
        "npcs.yaml:8",
        "damage_min is greater than damage_max",
    ),
    ("npcs", "min: 1, max: 2", "min: 3, max: 2", "npcs.yaml:12", "min is greater than max"),
    # references (reported at the start of the referring entry)
    (
        "world",
        "{north: gas_station}",
        "{north: nowhere}",
        "world.yaml:2",
        "location 'overpass': exit 'north' leads to unknown location 'nowhere'",
    ),
    (
        "world",
        "{south: overpass}",
        "{south: gas_station}",
        "world.yaml:18",
        "location 'gas_station': exit leads to itself",
    ),
    (
        "world",
        "{id: raider,",
        "{id: ghoul,",
        "world.yaml:2",
        "location 'overpass': unknown npc 'ghoul'",
    ),
    (
        "world",
        "loot: [scrap_metal]",
        "loot: [unobtainium]",
        "world.yaml:2",
        "interactable 'rusted_car' drops unknown item 'unobtainium'",
    ),
    (
        "npcs",
        "{item: scrap_metal,",
        "{item: unobtainium,",
        "npcs.yaml:2",
        "npc 'raider': loot names unknown item 'unobtainium'",
    ),
]


@pytest.mark.parametrize(
    ("stem", "old", "new", "where", "message"),
    SINGLE_DEFECTS,
    ids=[f"{d[3]}-{d[4][:40]}" for d in SINGLE_DEFECTS],
)
def test_single_defect_is_reported_at_its_line(
    tmp_path: Path, stem: str, old: str, new: str, where: str, message: str
) -> None:
    problems = _problems(_write_world(tmp_path, **{stem: (old, new)}))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{where}: "), problems
    assert message in problems[0]


def test_typo_of_a_required_field_reports_both_problems(tmp_path: Path) -> None:
    problems = _problems(_write_world(tmp_path, world=("name: Overpass", "nmae: Overpass")))
    assert len(problems) == 2, problems
    assert any(p.startswith("world.yaml:3: ") and "unknown field 'nmae'" in p for p in problems)
    assert any(
        p.startswith("world.yaml:2: ") and "missing required field 'name'" in p for p in problems
    )


@pytest.mark.parametrize(
    ("bad", "char"), [("bad id", " "), ("a:b", ":"), ("loc*", "*"), ("{x}", "{")]
)
def test_bad_ids_are_reported_with_the_offending_character(
    tmp_path: Path, bad: str, char: str
) -> None:
    quoted = f"'{bad}'" if bad[0] in "{*" else bad
    root = _write_world(tmp_path, world=("- id: gas_station", f"- id: {quoted}"))
    problems = _problems(root)
    id_problem = [p for p in problems if p.startswith("world.yaml:18: ")]
    assert len(id_problem) == 1, problems
    assert repr(bad) in id_problem[0]
    assert repr(char) in id_problem[0]
    # the entry is dropped, so the exit to it no longer resolves
    assert any(
        p.startswith("world.yaml:2: ") and "unknown location 'gas_station'" in p for p in problems
    )


def test_duplicate_yaml_keys_are_reported_at_the_second_key(tmp_path: Path) -> None:
    root = _write_world(
        tmp_path, npcs=("    hostile: true\n", "    hostile: true\n    hostile: false\n")
    )
    problems = _problems(root)
    assert problems[0].startswith("npcs.yaml:10: ")
    assert "duplicate key 'hostile'" in problems[0]
    # the rejected file's npc is then unknown where it spawns
    assert any(p.startswith("world.yaml:2: ") and "unknown npc 'raider'" in p for p in problems)


def test_duplicate_ids_across_files_name_the_first(tmp_path: Path) -> None:
    root = _write_world(tmp_path)
    (root / "z_more.yaml").write_text(
        "# more of the highway\nlocations:\n"
        + WORLD.split("\n", 1)[1].split("  - id: gas_station")[0],
        encoding="utf-8",
    )
    problems = _problems(root)
    assert problems == ["z_more.yaml:3: duplicate location id 'overpass' (first at world.yaml:2)"]


def test_duplicate_ids_within_a_file(tmp_path: Path) -> None:
    items = ITEMS + ITEMS.split("\n", 1)[1]
    (tmp_path / "items.yaml").write_text(items, encoding="utf-8")
    assert _problems(tmp_path) == [
        "items.yaml:15: duplicate item id 'scrap_metal' (first at items.yaml:2)"
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("items:\n  - id: x\n   name: bad indent\n", 3),
        ("items:\n  - id: x\n\tname: tab\n", 3),
        ("locations:\n  - id: x\n    exits: {north: y\n  - id: z\n", 4),
        ("npcs:\n  - id: 'unterminated\n", 3),
    ],
)
def test_malformed_yaml_reports_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    _write_world(tmp_path)
    (tmp_path / "broken.yaml").write_text(text, encoding="utf-8")
    problems = _problems(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"broken.yaml:{line}: YAML syntax error")


def test_non_utf8_file(tmp_path: Path) -> None:
    _write_world(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("items:\n  - name: Épée\n".encode("latin-1"))
    problems = _problems(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("latin1.yaml:1: ")
    assert "UTF-8" in problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- id: x\n", "extra.yaml:1: top level must be a mapping"),
        ("# c\nmonsters: []\n", "extra.yaml:2: unknown section 'monsters'"),
        ("items: {}\n", "extra.yaml:1: 'items' must be a list"),
        ("npcs:\n  - just a string\n", "extra.yaml:1: npcs[0] must be a mapping"),
    ],
)
def test_document_structure_problems(tmp_path: Path, text: str, expected: str) -> None:
    _write_world(tmp_path)
    (tmp_path / "extra.yaml").write_text(text, encoding="utf-8")
    problems = _problems(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


def test_empty_file_and_empty_sections_are_fine(tmp_path: Path) -> None:
    _write_world(tmp_path)
    (tmp_path / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    (tmp_path / "sections.yaml").write_text("items:\nnpcs:\n", encoding="utf-8")
    assert _problems(tmp_path) == []


# -- files and folders ------------------------------------------------------------------


def test_files_are_found_recursively_with_relative_names(tmp_path: Path) -> None:
    region = tmp_path / "regions" / "highway"
    region.mkdir(parents=True)
    (region / "world.yml").write_text(WORLD.replace("danger_level: 1\n", "danger_level: 12\n"))
    (tmp_path / "items.yaml").write_text(ITEMS, encoding="utf-8")
    (tmp_path / "npcs.yaml").write_text(NPCS, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not: [yaml", encoding="utf-8")
    problems = _problems(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("regions/highway/world.yml:6: ")


def test_a_single_file_can_be_validated(tmp_path: Path) -> None:
    path = tmp_path / "npcs.yaml"
    path.write_text(NPCS.replace("hp: 30", "hp: 0"), encoding="utf-8")
    problems = validate_gamedata(path).problems
    assert problems[0].startswith("npcs.yaml:6: npc 'raider': 'hp' must be at least 1, got 0")


def test_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("no yaml here", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no \.yaml files") as info:
        validate_gamedata(tmp_path)
    assert not isinstance(info.value, GamedataError)
    with pytest.raises(ConfigError) as info:
        load_gamedata(tmp_path)
    assert not isinstance(info.value, GamedataError)


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_gamedata(missing)
    assert not isinstance(info.value, GamedataError)
    assert str(missing) in str(info.value)


def test_non_finite_stats_are_problems(tmp_path: Path) -> None:
    (tmp_path / "items.yaml").write_text(
        "items:\n"
        "  - id: knife\n"
        "    name: Knife\n"
        "    description: Sharp.\n"
        "    type: weapon\n"
        "    weight: 1\n"
        "    volume: 1\n"
        "    emoji: x\n"
        "    image_path: /k.png\n"
        "    equippable: true\n"
        "    consumable: false\n"
        "    tier: 1\n"
        "    stats: {damage_min: .nan, damage_max: .inf}\n"
    )
    result = validate_gamedata(tmp_path)
    assert not result.ok
    assert sum("finite number" in p for p in result.problems) == 2


def test_unreadable_file_is_a_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.yaml").write_text("items: []\n")
    (tmp_path / "ok.yaml").write_text("items: []\n")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "broken.yaml":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = validate_gamedata(tmp_path)
    assert any(p.startswith("broken.yaml:1: cannot read file") for p in result.problems)
