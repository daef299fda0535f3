"""The plan's way to get gamedata into Redis, as one process, for ``benchmarks/wall.py``.

Run:  .venv/bin/python benchmarks/plan_load.py GAMEDATA_FOLDER REDIS_URL

What a game server does at start-up: read each YAML file with ``yaml.safe_load`` (PyYAML's
default, pure-Python loader), then write every location, item and NPC with one ``HSET``
awaited before the next (values: JSON for lists, mappings and booleans, ``str`` otherwise).
No validation, no diff, no version record: it is the baseline, not a tool. Only PyYAML and
redis-py are imported, as a game would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import Redis

PREFIXES = {
    "locations": ("location:", ":cache"),
    "items": ("item:", ":def"),
    "npcs": ("npc:", ":def"),
}


def read_world(folder: Path) -> dict[str, list[dict[str, Any]]]:
    world: dict[str, list[dict[str, Any]]] = {kind: [] for kind in PREFIXES}
    for path in sorted(folder.rglob("*.y*ml")):
        with path.open(encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
        for kind in PREFIXES:
            world[kind].extend(document.get(kind) or [])
    return world


def encoded(entry: dict[str, Any]) -> dict[str, str]:
    return {
        name: json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
        for name, value in entry.items()
    }


async def write(world: dict[str, list[dict[str, Any]]], url: str) -> int:
    client = Redis.from_url(url)
    written = 0
    try:
        for kind, (before, after) in PREFIXES.items():
            for entry in world[kind]:
                await client.hset(f"{before}{entry['id']}{after}", mapping=encoded(entry))
                written += 1
    finally:
        await client.aclose()
    return written


def main() -> None:
    folder, url = Path(sys.argv[1]), sys.argv[2]
    written = asyncio.run(write(read_world(folder), url))
    print(f"plan: {written} keys written")


if __name__ == "__main__":
    main()
