"""Game data: YAML models and validation (pure, no I/O besides reading the files and the
parsed-world cache). The models are imported when first named: finding a world unchanged in
the cache needs none of them."""

from typing import TYPE_CHECKING, Any

from echoes_ops.gamedata.cache import WorldCache
from echoes_ops.gamedata.loader import World, load_gamedata, load_world, validate_gamedata

if TYPE_CHECKING:
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

_MODELS = ("GameData", "Item", "Location", "Npc")


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from echoes_ops.gamedata import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
