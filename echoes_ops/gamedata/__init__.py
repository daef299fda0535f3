"""Game data: YAML models and validation (pure, no I/O besides reading the files)."""

from echoes_ops.gamedata.loader import load_gamedata, validate_gamedata
from echoes_ops.gamedata.models import GameData, Item, Location, Npc

__all__ = ["GameData", "Item", "Location", "Npc", "load_gamedata", "validate_gamedata"]
