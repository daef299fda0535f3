"""The bundled world (gamedata/): it validates clean, has the plan's locations, every
location is reachable and every NPC spawns, and its cache records carry the contract's
fields."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from echoes_ops.gamedata import validate_gamedata
from echoes_ops.gamedata.loader import ValidationResult

BUNDLED = Path(__file__).resolve().parent.parent / "gamedata"


@pytest.fixture(scope="module")
def bundled() -> ValidationResult:
    return validate_gamedata(BUNDLED)


def test_bundled_world_validates_clean(bundled: ValidationResult) -> None:
    assert bundled.problems == []
    assert bundled.ok
    assert bundled.data is not None


def test_bundled_world_size(bundled: ValidationResult) -> None:
    assert bundled.data is not None
    counts = bundled.data.counts()
    assert counts["locations"] >= 40
    assert counts["items"] >= 150
    assert counts["npcs"] >= 20


def test_bundled_world_has_the_plan_locations(bundled: ValidationResult) -> None:
    assert bundled.data is not None
    locations = bundled.data.locations
    assert {"overpass", "gas_station", "ruins"} <= set(locations)
    assert locations["overpass"].exits["north"] == "gas_station"
    assert locations["overpass"].exits["south"] == "ruins"


def test_every_bundled_location_is_reachable_from_overpass(bundled: ValidationResult) -> None:
    assert bundled.data is not None
    locations = bundled.data.locations
    seen = {"overpass"}
    queue = deque(["overpass"])
    while queue:
        for target in locations[queue.popleft()].exits.values():
            if target not in seen:
                seen.add(target)
                queue.append(target)
    assert seen == set(locations)


def test_every_bundled_npc_spawns_somewhere(bundled: ValidationResult) -> None:
    assert bundled.data is not None
    spawned = {spawn.id for loc in bundled.data.locations.values() for spawn in loc.npcs}
    assert set(bundled.data.npcs) <= spawned


def test_bundled_location_records_carry_the_contract_cache_fields(
    bundled: ValidationResult,
) -> None:
    assert bundled.data is not None
    assert bundled.data.root == str(BUNDLED)
    record = bundled.data.locations["overpass"].to_record()
    assert set(record) == {
        "id",
        "name",
        "description",
        "exits",
        "danger_level",
        "image_path",
        "x",
        "y",
        "tags",
        "interactables",
        "npcs",
    }
