"""Load a gamedata folder and validate it, reporting every problem as ``file:line: message``.

A folder holds any number of ``*.yaml``/``*.yml`` files (searched recursively, in sorted
order); each is a mapping with any of the lists ``locations``, ``items`` and ``npcs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoes_ops.contract.ids import check_name
from echoes_ops.errors import ConfigError, GamedataError, InvalidIdError
from echoes_ops.gamedata.models import (
    DIRECTIONS,
    ITEM_TYPES,
    GameData,
    Interactable,
    Item,
    Location,
    LootEntry,
    Npc,
    NpcSpawn,
    Source,
)
from echoes_ops.gamedata.yamlload import LineDict, YamlProblem, load_yaml

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

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(f"{file}:{line}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)


class _Entry:
    """Typed field access on one YAML mapping, recording problems instead of raising."""

    def __init__(self, raw: LineDict, file: str, what: str, problems: Problems) -> None:
        self.raw = raw
        self.file = file
        self.what = what
        self.problems = problems
        self.ok = True

    def line_of(self, name: str) -> int:
        return self.raw.key_lines.get(name, self.raw.line)

    def fail(self, name: str | None, message: str) -> None:
        self.ok = False
        line = self.line_of(name) if name else self.raw.line
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

    def text(self, name: str, *, required: bool = True, default: str = "") -> str:
        def check(value: Any) -> str:
            if not isinstance(value, str) or not value.strip():
                raise TypeError
            return value

        result: str = self._get(name, required, default, check, "a non-empty string")
        return result

    def integer(self, name: str, low: int, high: int | None, *, required: bool = True) -> int:
        def check(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value

        number: int = self._get(name, required, low, check, "a whole number")
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(name, f"'{name}' must be {bound}, got {number}")
        return number

    def number(
        self, name: str, low: float, high: float | None = None, *, required: bool = True
    ) -> float:
        def check(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            if not math.isfinite(value):
                raise ValueError
            return float(value)

        number: float = self._get(name, required, low, check, "a number")
        if number < low or (high is not None and number > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            self.fail(name, f"'{name}' must be {bound}, got {number:g}")
        return number

    def boolean(self, name: str, *, required: bool = True, default: bool = False) -> bool:
        def check(value: Any) -> bool:
            if not isinstance(value, bool):
                raise TypeError
            return value

        result: bool = self._get(name, required, default, check, "true or false")
        return result

    def listing(self, name: str, *, required: bool = False) -> list[Any]:
        def check(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise TypeError
            return value

        result: list[Any] = self._get(name, required, [], check, "a list")
        return result

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any]:
        def check(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)

        result: dict[str, Any] = self._get(name, required, {}, check, "a mapping")
        return result

    def numeric_map(self, name: str) -> dict[str, float]:
        values = self.mapping(name)
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


def _sub_entries(entry: _Entry, name: str, what: str) -> list[_Entry]:
    out = []
    for index, raw in enumerate(entry.listing(name)):
        if not isinstance(raw, LineDict):
            entry.fail(name, f"{name}[{index}] must be a mapping")
            continue
        out.append(_Entry(raw, entry.file, f"{entry.what} {what}", entry.problems))
    return out


def _parse_location(entry: _Entry) -> Location:
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
        source=Source(entry.file, entry.raw.line),
    )


def _parse_item(entry: _Entry) -> Item:
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
        source=Source(entry.file, entry.raw.line),
    )


def _parse_npc(entry: _Entry) -> Npc:
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
        source=Source(entry.file, entry.raw.line),
    )


_PARSERS: dict[str, Callable[[_Entry], Any]] = {
    "locations": _parse_location,
    "items": _parse_item,
    "npcs": _parse_npc,
}


def gamedata_files(root: Path) -> list[Path]:
    if not root.exists():
        raise ConfigError(f"gamedata folder {root} does not exist")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    if not files:
        raise ConfigError(f"gamedata folder {root} holds no .yaml files")
    return files


@dataclass
class ValidationResult:
    data: GameData | None
    problems: list[str]
    files: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_gamedata(root: str | Path) -> ValidationResult:
    """Parse and cross-check every file under ``root``; never raises for bad content."""
    root = Path(root)
    files = gamedata_files(root)
    problems = Problems()
    parsed: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for path in files:
        name = str(path.relative_to(root)) if root.is_dir() else path.name
        try:
            document = load_yaml(path)
        except YamlProblem as exc:
            problems.add(name, exc.line, exc.message)
            continue
        if document is None:
            continue
        if not isinstance(document, LineDict):
            problems.add(name, 1, "top level must be a mapping with locations, items or npcs")
            continue
        for kind, entries in document.items():
            line = document.key_lines.get(kind, 1)
            if kind not in KINDS:
                problems.add(name, line, f"unknown section '{kind}' (expected {', '.join(KINDS)})")
                continue
            if entries is None:
                continue
            if not isinstance(entries, list):
                problems.add(name, line, f"'{kind}' must be a list")
                continue
            for index, raw in enumerate(entries):
                if not isinstance(raw, LineDict):
                    problems.add(name, line, f"{kind}[{index}] must be a mapping")
                    continue
                entry = _Entry(raw, name, kind[:-1], problems)
                obj = _PARSERS[kind](entry)
                if not obj.id:
                    continue
                if obj.id in parsed[kind]:
                    first = parsed[kind][obj.id].source
                    problems.add(
                        name, raw.line, f"duplicate {kind[:-1]} id '{obj.id}' (first at {first})"
                    )
                    continue
                parsed[kind][obj.id] = obj
    _check_references(parsed, problems)
    data = None
    if not problems:
        data = GameData(
            locations=parsed["locations"],
            items=parsed["items"],
            npcs=parsed["npcs"],
            root=str(root),
        )
    return ValidationResult(data=data, problems=problems.items, files=[str(f) for f in files])


def _check_references(parsed: dict[str, dict[str, Any]], problems: Problems) -> None:
    locations: dict[str, Location] = parsed["locations"]
    items: dict[str, Item] = parsed["items"]
    npcs: dict[str, Npc] = parsed["npcs"]
    for loc in locations.values():
        where = loc.source
        for direction, target in loc.exits.items():
            if target == loc.id:
                problems.add(where.file, where.line, f"location '{loc.id}': exit leads to itself")
            elif target not in locations:
                problems.add(
                    where.file,
                    where.line,
                    f"location '{loc.id}': exit '{direction}' leads to unknown location '{target}'",
                )
        for spawn in loc.npcs:
            if spawn.id and spawn.id not in npcs:
                problems.add(
                    where.file, where.line, f"location '{loc.id}': unknown npc '{spawn.id}'"
                )
        for thing in loc.interactables:
            for item_id in thing.loot:
                if item_id not in items:
                    problems.add(
                        where.file,
                        where.line,
                        f"location '{loc.id}': interactable '{thing.id}' drops unknown item "
                        f"'{item_id}'",
                    )
    for npc in npcs.values():
        for entry in npc.loot:
            if entry.item and entry.item not in items:
                problems.add(
                    npc.source.file,
                    npc.source.line,
                    f"npc '{npc.id}': loot names unknown item '{entry.item}'",
                )


def load_gamedata(root: str | Path) -> GameData:
    """Load and validate; raise :class:`GamedataError` listing every problem."""
    result = validate_gamedata(root)
    if result.data is None:
        count = len(result.problems)
        first = result.problems[0] if result.problems else "unknown problem"
        raise GamedataError(
            f"gamedata is invalid ({count} problem{'s' if count != 1 else ''}; first: {first})",
            result.problems,
        )
    return result.data
