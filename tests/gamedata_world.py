"""A small valid gamedata world for the gamedata and preload tests, written with text
replacements to break it, and the problems validation finds in a folder (each one as
``file:line: message``)."""

from __future__ import annotations

import re
from pathlib import Path

from echoes_ops.gamedata import validate_gamedata

PROBLEM_FORMAT = re.compile(r"^(?P<file>[^:]+\.ya?ml):(?P<line>\d+): (?P<message>.+)$")


WORLD = """\
locations:
  - id: overpass
    name: Overpass
    description: A crumbling overpass.
    exits: {north: gas_station}
    danger_level: 1
    image_path: /images/locations/overpass.png
    x: 5.0
    y: 6.0
    tags: [start]
    interactables:
      - id: rusted_car
        name: Rusted Car
        actions: [search]
        loot: [scrap_metal]
    npcs:
      - {id: raider, chance: 0.3}
  - id: gas_station
    name: Gas Station
    description: A looted gas station.
    exits: {south: overpass}
    danger_level: 2
    image_path: /images/locations/gas_station.png
    x: 5
    y: 7
"""

ITEMS = """\
items:
  - id: scrap_metal
    name: Scrap Metal
    description: Twisted sheet metal.
    type: material
    weight: 1.0
    volume: 0.5
    emoji: 🔩
    image_path: /images/items/scrap_metal.png
    equippable: false
    consumable: false
    tier: 1
    stats: {}
    effects: {}
"""

NPCS = """\
npcs:
  - id: raider
    name: Raider
    description: A wasteland raider.
    level: 3
    hp: 30
    damage_min: 2
    damage_max: 6
    hostile: true
    xp_reward: 15
    loot:
      - {item: scrap_metal, chance: 0.5, min: 1, max: 2}
"""

FILES = {"world.yaml": WORLD, "items.yaml": ITEMS, "npcs.yaml": NPCS}


def _write_world(root: Path, **changes: tuple[str, str]) -> Path:
    """Write the valid world, applying ``file_stem=(old, new)`` text replacements."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        stem = name.removesuffix(".yaml")
        if stem in changes:
            old, new = changes[stem]
            assert text.count(old) == 1, f"{old!r} must occur once in {name}"
            text = text.replace(old, new)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _problems(root: Path) -> list[str]:
    problems = validate_gamedata(root).problems
    for problem in problems:
        assert PROBLEM_FORMAT.match(problem), problem
    return problems
