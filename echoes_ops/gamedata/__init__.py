"""Game data: YAML models and validation (pure, no I/O besides reading the files and the
parsed-world cache)."""

from echoes_ops.gamedata.cache import WorldCache
from echoes_ops.gamedata.loader import World, load_gamedata, load_world, validate_gamedata
from echoes_ops.gamedata.models import GameData, Item, Location, Npc

__all__ = [
    "GameData",
    "Item",
    "Location",
    "Npc",
    "World",
    "WorldCache",
    "load_gamedata",
    "load_world",
    "validate_gamedata",
]
