"""Generate a large synthetic world (for benchmarks) as in-memory GameData or YAML files."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml

from echoes_ops.gamedata.models import GameData, Interactable, Item, Location


def make_world(items: int = 20_000, locations: int = 2_000, *, seed: int = 1) -> GameData:
    rng = random.Random(seed)
    item_map: dict[str, Item] = {}
    for i in range(items):
        low = rng.randint(1, 10)
        item_map[f"bench_item_{i}"] = Item(
            id=f"bench_item_{i}",
            name=f"Salvaged Part {i}",
            description="A generated item used to measure preload throughput.",
            type=rng.choice(["weapon", "armor", "material", "junk"]),
            weight=round(rng.uniform(0.1, 12.0), 2),
            volume=round(rng.uniform(0.1, 5.0), 2),
            emoji="🔩",
            image_path=f"/images/items/bench_item_{i}.png",
            equippable=rng.random() < 0.4,
            consumable=False,
            tier=rng.randint(1, 5),
            stats={"damage_min": low, "damage_max": low + rng.randint(0, 8), "durability": 100},
            effects={},
        )
    item_ids = list(item_map)
    loc_map: dict[str, Location] = {}
    for i in range(locations):
        loc_map[f"bench_loc_{i}"] = Location(
            id=f"bench_loc_{i}",
            name=f"Sector {i}",
            description="A generated location used to measure preload throughput.",
            exits={
                "north": f"bench_loc_{(i + 1) % locations}",
                "south": f"bench_loc_{(i - 1) % locations}",
            },
            danger_level=rng.randint(0, 10),
            image_path=f"/images/locations/bench_loc_{i}.png",
            x=float(i % 50),
            y=float(i // 50),
            tags=("generated", "ruins"),
            interactables=(
                Interactable(
                    id="crate",
                    name="Crate",
                    actions=("search",),
                    loot=tuple(rng.sample(item_ids, 3)),
                ),
            ),
        )
    return GameData(locations=loc_map, items=item_map, npcs={}, root="<generated>")


def write_yaml(data: GameData, folder: Path, *, batch: int = 1000) -> None:
    """``items.yaml`` and ``locations.yaml`` as ``yaml.safe_dump`` lays them out, written a
    batch of entries at a time (libyaml's emitter when PyYAML has it)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = (("items", data.items), ("locations", data.locations))
    for kind, entries in kinds:
        records = [entry.to_record() for entry in entries.values()]
        with (folder / f"{kind}.yaml").open("w", encoding="utf-8") as out:
            out.write(f"{kind}:\n")
            for start in range(0, len(records), batch):
                out.write(yaml.dump(records[start : start + batch], Dumper=dumper, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a generated world as gamedata YAML.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--locations", type=int, default=2_000)
    args = parser.parse_args()
    write_yaml(make_world(args.items, args.locations), args.folder)


if __name__ == "__main__":
    main()
