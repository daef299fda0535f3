"""Demo data for the reference game schema: characters and their inventories.

``seed_demo`` applies ``schema.sql`` and writes characters ``1..characters`` and their
inventories, generated from a seed, so two runs with the same arguments leave the same rows.
Characters outside that id range, and all other tables, are left alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import asyncpg

from echoes_ops.client.postgres import connect_postgres, target_of
from echoes_ops.errors import ConfigError, PostgresError

ACTIVE_WINDOW = timedelta(hours=6)
MIN_ITEMS, MAX_ITEMS = 2, 8
MAX_LEVEL = 30

FIRST_NAMES = (
    "Ash", "Rook", "Cinder", "Vesper", "Dune", "Marrow", "Flint", "Sable", "Wren", "Hollis",
    "Jett", "Kestrel", "Lark", "Mercy", "Nox", "Onyx", "Piper", "Quill", "Rust", "Sloane",
    "Tallow", "Umber", "Vale", "Wick", "Yara", "Zeke", "Brine", "Cobalt", "Drift", "Ember",
    "Fable", "Gideon", "Haze", "Ingram", "Juno", "Knox",
)  # fmt: skip
LAST_NAMES = (
    "Ashgrave", "Blackwater", "Cole", "Dustwalker", "Emberlin", "Fallow", "Grimsby",
    "Hollowell", "Ironside", "Jagger", "Kettle", "Lockhart", "Mire", "Nettles", "Oakes",
    "Pyre", "Quarry", "Ravenscar", "Saltmarsh", "Thorne", "Underhill", "Voss", "Wastrel",
    "Yardley", "Scrapper", "Tinker", "Cinders", "Drywell", "Rainwater", "Stillwater",
)  # fmt: skip

CHARACTER_COLUMNS = (
    "id",
    "name",
    "location_id",
    "hp",
    "max_hp",
    "stamina",
    "max_stamina",
    "level",
    "xp",
    "last_movement_time",
    "last_active_at",
)
INVENTORY_COLUMNS = ("character_id", "item_id", "quantity", "durability", "is_equipped")

_UPSERT_CHARACTERS = (
    f"INSERT INTO characters ({', '.join(CHARACTER_COLUMNS)}) "
    f"SELECT {', '.join(CHARACTER_COLUMNS)} FROM _demo_characters "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in CHARACTER_COLUMNS if c != "id")
)


@dataclass(frozen=True)
class DemoSummary:
    """What ``seed_demo`` wrote."""

    characters: int
    inventory_rows: int


def load_schema_sql() -> str:
    """The reference game schema shipped with the package."""
    return resources.files("echoes_ops.local").joinpath("schema.sql").read_text(encoding="utf-8")


def _xp_floor(level: int) -> int:
    """Total xp needed to reach ``level`` (level 1 needs none)."""
    return 50 * (level - 1) * level


def _names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(combos)
    names = []
    for index in range(count):
        name = combos[index % len(combos)]
        lap = index // len(combos)
        names.append(f"{name} {lap + 1}" if lap else name)
    return names


def demo_rows(
    *,
    location_ids: Sequence[str],
    item_ids: Sequence[str],
    characters: int = 300,
    seed: int = 7,
    now: datetime,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The character and inventory rows ``seed_demo`` writes, in column order."""
    if not location_ids:
        raise ConfigError("demo data needs at least one location id")
    if not item_ids:
        raise ConfigError("demo data needs at least one item id")
    if characters < 0:
        raise ConfigError(f"demo character count must be 0 or more, got {characters}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # naive times are taken as UTC
    rng = random.Random(seed)
    locations = sorted(set(location_ids))
    items = sorted(set(item_ids))
    character_rows: list[tuple[Any, ...]] = []
    inventory_rows: list[tuple[Any, ...]] = []
    for char_id, name in enumerate(_names(rng, characters), start=1):
        # Most survivors are low level; a few have lasted a long time.
        level = min(MAX_LEVEL, 1 + int(rng.expovariate(1 / 6)))
        xp = rng.randrange(_xp_floor(level), _xp_floor(level + 1))
        max_hp = 80 + 10 * level + rng.randint(0, 15)
        hp = max_hp if rng.random() < 0.6 else rng.randint(1, max_hp)
        max_stamina = 50 + 3 * level
        stamina = rng.randint(max_stamina // 4, max_stamina)
        last_active = now - timedelta(seconds=rng.uniform(0, ACTIVE_WINDOW.total_seconds()))
        moved = last_active - timedelta(seconds=rng.uniform(0, 900))
        character_rows.append(
            (
                char_id,
                name,
                rng.choice(locations),
                hp,
                max_hp,
                stamina,
                max_stamina,
                level,
                xp,
                round(moved.timestamp(), 3),
                last_active,
            )
        )
        carried = rng.sample(items, min(len(items), rng.randint(MIN_ITEMS, MAX_ITEMS)))
        equipped = set(rng.sample(carried, rng.randint(0, min(2, len(carried)))))
        for item_id in carried:
            worn = item_id in equipped or rng.random() < 0.3
            durability = rng.randint(5, 100) if worn else None
            quantity = 1 if worn else rng.randint(1, 12)
            inventory_rows.append((char_id, item_id, quantity, durability, item_id in equipped))
    return character_rows, inventory_rows


async def seed_demo(
    dsn: str,
    *,
    location_ids: Sequence[str],
    item_ids: Sequence[str],
    characters: int = 300,
    seed: int = 7,
    now: datetime | None = None,
) -> DemoSummary:
    """Apply the reference schema and write the demo characters and inventories.

    Characters ``1..characters`` are inserted or overwritten and their inventories replaced,
    all in one transaction. ``now`` anchors ``last_active_at`` (spread over the six hours
    before it); it defaults to the current time.
    """
    anchor = now if now is not None else datetime.now(UTC)
    character_rows, inventory_rows = demo_rows(
        location_ids=location_ids,
        item_ids=item_ids,
        characters=characters,
        seed=seed,
        now=anchor,
    )
    schema = load_schema_sql()
    target = target_of(dsn)
    conn = await connect_postgres(dsn)
    try:
        async with conn.transaction():
            await conn.execute(schema)
            await conn.execute(
                "CREATE TEMP TABLE _demo_characters (LIKE characters) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                "_demo_characters", records=character_rows, columns=CHARACTER_COLUMNS
            )
            await conn.execute(_UPSERT_CHARACTERS)
            await conn.execute(
                "DELETE FROM inventory WHERE character_id = ANY($1::integer[])",
                [row[0] for row in character_rows],
            )
            await conn.copy_records_to_table(
                "inventory", records=inventory_rows, columns=INVENTORY_COLUMNS
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PostgresError(f"seeding demo data at {target} failed: {reason}") from None
    finally:
        await conn.close()
    return DemoSummary(characters=len(character_rows), inventory_rows=len(inventory_rows))
