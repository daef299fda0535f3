"""Validation of one gamedata entry (a location, an item, an NPC) into its model.

Every problem is recorded as ``file:line: message`` instead of raised, so one run reports
them all. An entry read without line information (the fast path) knows only the line it
starts on and places every finding there; the loader reads the files concerned again with
lines before it reports anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.contract.ids import check_name
from echoes_ops.errors import InvalidIdError
from echoes_ops.gamedata.models import (
    DIRECTIONS,
    ITEM_TYPES,
    Interactable,
    Item,
    Location,
    LootEntry,
    Npc,
    NpcSpawn,
    Source,
)
from echoes_ops.gamedata.source import LineDict

KINDS = ("locations", "items", "npcs")
MAX_DANGER = 10
MAX_TIER = 5
MAX_NPC_LEVEL = 100
INTERACTABLE_ACTIONS = frozenset(
    {"search", "loot", "use", "open", "climb", "repair", "read", "rest", "drink", "scavenge"}
)


@dataclass
class Problems:
    """Collected findings, each ``file:line: message``."""

    items: list[str] = field(default_factory=list)
    # files whose lines the messages show (the problem's own, and a first definition's)
    files: set[str] = field(default_factory=set)

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(f"{file}:{line}: {message}")
        self.files.add(file)

    def extend(self, other: Problems) -> None:
        self.items += other.items
        self.files |= other.files

    def __bool__(self) -> bool:
        return bool(self.items)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    if not math.isfinite(value):
        raise ValueError
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _listing(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError
    return value


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError
    return dict(value)


class Entry:
    """Typed field access on one YAML mapping, recording problems instead of raising."""

    def __init__(
        self, raw: dict[str, Any], file: str, what: str, problems: Problems, line: int
    ) -> None:
        self.raw = raw
        self.file = file
        self.what = what
        self.problems = problems
        self.ok = True
        if type(raw) is LineDict:
            self.line = raw.line
            self.key_lines = raw.key_lines
        else:  # read without line information: fields are placed at ``line`` (the entry's)
            self.line = line
            self.key_lines = {}

    def line_of(self, name: str) -> int:
        return self.key_lines.get(name, self.line)

    def fail(self, name: str | None, message: str) -> None:
        self.ok = False
        line = self.line_of(name) if name else self.line
        self.problems.add(self.file, line, f"{self.what}: {message}")

    def _get(
        self, name: str, required: bool, default: Any, check: Callable[[Any], Any], kind: str
    ) -> Any:
        if name not in self.raw or self.raw[name] is None:
            if required:
                self.fail(None, f"missing required field '{name}'")
            return default
        value = self.raw[name]
        try:
            return check(value)
        except (TypeError, ValueError):
            self.fail(name, f"'{name}' must be {kind}, got {value!r}")
            return default

    # Each accessor takes the common case (a value of the right type) at once and leaves
    # everything else (missing, null, wrong type) to ``_get``, which words the problem.

    def text(self, name: str, *, required: bool = True, default: str = "") -> str:
        value = self.raw.get(name)
        if type(value) is str and value.strip():
            return value
        result: str = self._get(name, required, default, _text, "a non-empty string")
        return result

    def integer(self, name: str, low: int, high: int | None, *, required: bool = True) -> int:
        value = self.raw.get(name)
        number: int = (
            value
            if type(value) is int
            else self._get(name, required, low, _whole, "a whole number")
        )
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(name, f"'{name}' must be {bound}, got {number}")
        return number

    def number(
        self, name: str, low: float, high: float | None = None, *, required: bool = True
    ) -> float:
        value: Any = self.raw.get(name)
        kind = type(value)
        number: float = (
            float(value)
            if (kind is float or kind is int) and math.isfinite(value)
            else self._get(name, required, low, _finite, "a number")
        )
        if number < low or (high is not None and number > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            self.fail(name, f"'{name}' must be {bound}, got {number:g}")
        return number

    def boolean(self, name: str, *, required: bool = True, default: bool = False) -> bool:
        value = self.raw.get(name)
        if type(value) is bool:
            return value
        result: bool = self._get(name, required, default, _boolean, "true or false")
        return result

    def listing(self, name: str, *, required: bool = False) -> list[Any]:
        value = self.raw.get(name)
        if type(value) is list:
            return value
        result: list[Any] = self._get(name, required, [], _listing, "a list")
        return result

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any]:
        value = self.raw.get(name)
        if type(value) is dict or type(value) is LineDict:
            return dict(value)
        result: dict[str, Any] = self._get(name, required, {}, _mapping, "a mapping")
        return result

    def numeric_map(self, name: str) -> dict[str, float]:
        values = self.mapping(name)
        kinds = set(map(type, values.values()))
        if kinds <= {int} or (kinds <= {int, float} and all(map(math.isfinite, values.values()))):
            return values  # the common case, checked in C: every value a finite number
        out: dict[str, float] = {}
        for key, value in values.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                self.fail(name, f"'{name}.{key}' must be a finite number, got {value!r}")
                continue
            out[key] = value
        return out

    def unknown_fields(self, allowed: frozenset[str]) -> None:
        if self.raw.keys() <= allowed:
            return
        for name in self.raw:
            if name not in allowed:
                self.fail(name, f"unknown field '{name}'")

    def ident(self, name: str = "id", what: str = "id") -> str:
        value = self.raw.get(name)
        if value is None:
            self.fail(None, f"missing required field '{name}'")
            return ""
        if not isinstance(value, str):
            self.fail(name, f"'{name}' must be a string, got {value!r}")
            return ""
        try:
            return check_name(value, what)
        except InvalidIdError as exc:
            self.fail(name, str(exc))
            return ""


_LOCATION_FIELDS = frozenset(
    {
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
)
_ITEM_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "type",
        "weight",
        "volume",
        "emoji",
        "image_path",
        "equippable",
        "consumable",
        "tier",
        "stats",
        "effects",
    }
)
_NPC_FIELDS = frozenset(
    {"id", "name", "description", "level", "hp", "damage_min", "damage_max", "hostile"}
    | {"xp_reward", "loot"}
)


def _sub_entries(entry: Entry, name: str, what: str) -> list[Entry]:
    out = []
    for index, raw in enumerate(entry.listing(name)):
        if not isinstance(raw, dict):
            entry.fail(name, f"{name}[{index}] must be a mapping")
            continue
        out.append(Entry(raw, entry.file, f"{entry.what} {what}", entry.problems, entry.line))
    return out


def _parse_location(entry: Entry) -> Location:
    loc_id = entry.ident(what="location id")
    entry.what = f"location '{loc_id}'"
    entry.unknown_fields(_LOCATION_FIELDS)
    exits: dict[str, str] = {}
    for direction, target in entry.mapping("exits", required=True).items():
        if direction not in DIRECTIONS:
            entry.fail("exits", f"unknown exit direction '{direction}'")
        elif not isinstance(target, str):
            entry.fail("exits", f"exit '{direction}' must name a location id, got {target!r}")
        else:
            exits[direction] = target
    interactables = []
    seen: set[str] = set()
    for sub in _sub_entries(entry, "interactables", "interactable"):
        sub.unknown_fields(frozenset({"id", "name", "description", "actions", "loot"}))
        iid = sub.ident(what="interactable id")
        if iid in seen:
            sub.fail("id", f"duplicate interactable id '{iid}'")
        seen.add(iid)
        actions = tuple(str(a) for a in sub.listing("actions"))
        for action in actions:
            if action not in INTERACTABLE_ACTIONS:
                sub.fail("actions", f"unknown action '{action}'")
        interactables.append(
            Interactable(
                id=iid,
                name=sub.text("name"),
                description=sub.text("description", required=False) or None,
                actions=actions,
                loot=tuple(str(x) for x in sub.listing("loot")),
            )
        )
    spawns = []
    for sub in _sub_entries(entry, "npcs", "npc spawn"):
        sub.unknown_fields(frozenset({"id", "chance"}))
        spawns.append(NpcSpawn(id=sub.ident(what="npc id"), chance=sub.number("chance", 0, 1)))
    tags = entry.listing("tags")
    for tag in tags:
        if not isinstance(tag, str):
            entry.fail("tags", f"tags must be strings, got {tag!r}")
    return Location(
        id=loc_id,
        name=entry.text("name"),
        description=entry.text("description"),
        exits=exits,
        danger_level=entry.integer("danger_level", 0, MAX_DANGER),
        image_path=entry.text("image_path"),
        x=entry.number("x", -1e6, 1e6),
        y=entry.number("y", -1e6, 1e6),
        tags=tuple(str(t) for t in tags),
        interactables=tuple(interactables),
        npcs=tuple(spawns),
        source=Source(entry.file, entry.line),
    )


def _parse_item(entry: Entry) -> Item:
    item_id = entry.ident(what="item id")
    entry.what = f"item '{item_id}'"
    entry.unknown_fields(_ITEM_FIELDS)
    item_type = entry.text("type")
    if item_type and item_type not in ITEM_TYPES:
        entry.fail("type", f"unknown item type '{item_type}' (one of {', '.join(ITEM_TYPES)})")
    stats = entry.numeric_map("stats")
    low, high = stats.get("damage_min"), stats.get("damage_max")
    if low is not None and high is not None and low > high:
        entry.fail("stats", "stats.damage_min is greater than stats.damage_max")
    return Item(
        id=item_id,
        name=entry.text("name"),
        description=entry.text("description"),
        type=item_type,
        weight=entry.number("weight", 0),
        volume=entry.number("volume", 0),
        emoji=entry.text("emoji"),
        image_path=entry.text("image_path"),
        equippable=entry.boolean("equippable"),
        consumable=entry.boolean("consumable"),
        tier=entry.integer("tier", 1, MAX_TIER),
        stats=stats,
        effects=entry.numeric_map("effects"),
        source=Source(entry.file, entry.line),
    )


def _parse_npc(entry: Entry) -> Npc:
    npc_id = entry.ident(what="npc id")
    entry.what = f"npc '{npc_id}'"
    entry.unknown_fields(_NPC_FIELDS)
    damage_min = entry.integer("damage_min", 0, None)
    damage_max = entry.integer("damage_max", 0, None)
    if damage_min > damage_max:
        entry.fail("damage_max", "damage_min is greater than damage_max")
    loot = []
    for sub in _sub_entries(entry, "loot", "loot entry"):
        sub.unknown_fields(frozenset({"item", "chance", "min", "max"}))
        low = sub.integer("min", 1, None, required=False) if "min" in sub.raw else 1
        high = sub.integer("max", 1, None, required=False) if "max" in sub.raw else low
        if low > high:
            sub.fail("max", "min is greater than max")
        loot.append(
            LootEntry(
                item=sub.ident("item", what="item id"),
                chance=sub.number("chance", 0, 1),
                min=low,
                max=high,
            )
        )
    return Npc(
        id=npc_id,
        name=entry.text("name"),
        description=entry.text("description"),
        level=entry.integer("level", 1, MAX_NPC_LEVEL),
        hp=entry.integer("hp", 1, None),
        damage_min=damage_min,
        damage_max=damage_max,
        hostile=entry.boolean("hostile"),
        xp_reward=entry.integer("xp_reward", 0, None, required=False),
        loot=tuple(loot),
        source=Source(entry.file, entry.line),
    )


PARSERS: dict[str, Callable[[Entry], Any]] = {
    "locations": _parse_location,
    "items": _parse_item,
    "npcs": _parse_npc,
}
