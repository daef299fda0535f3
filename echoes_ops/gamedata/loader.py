"""Load a gamedata folder and validate it, reporting every problem as ``file:line: message``.

A folder holds any number of ``*.yaml``/``*.yml`` files (searched recursively, in sorted
order); each is a mapping with any of the lists ``locations``, ``items`` and ``npcs``.

How it stays fast (docs/gamedata.md#how-gamedata-is-read):

1. With a :class:`~echoes_ops.gamedata.cache.WorldCache`, the files are hashed first; a
   world validated before under the same key is not read again.
2. Each file is read by yaml-rs (:mod:`~echoes_ops.gamedata.nativeyaml`) where its values
   cannot differ from PyYAML's, else by libyaml (:mod:`~echoes_ops.gamedata.fastyaml`),
   without line information, a chunk or an entry at a time, each entry validated into its
   model as it arrives, so memory holds the models and one chunk's raw YAML. YAML outside
   the fast readers' subset, and every YAML error, goes to the precise loader, which also
   gives the exact message.
3. Only when problems were found are the files the messages name read again, this time
   with lines, so every message carries the same ``file:line`` as a precise read would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from echoes_ops.cycles import no_cycle_collection
from echoes_ops.errors import ConfigError, GamedataError
from echoes_ops.gamedata.cache import CacheMiss, WorldCache, file_digest, reader_version, world_key

if TYPE_CHECKING:
    from echoes_ops.gamedata.models import GameData

T = TypeVar("T")


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
class World:
    """A valid gamedata world: what is known without reading it (files, counts, the key of
    its content) and the data itself, kept from validation or read from the cache on
    demand. Upper layers keep what they derive from it beside it (:meth:`annex`)."""

    root: str
    files: list[str]
    counts: dict[str, int]
    key: str | None = None
    cache: WorldCache | None = field(default=None, repr=False)
    _data: GameData | None = field(default=None, repr=False)
    _fetch: Callable[[], GameData] | None = field(default=None, repr=False)
    _kept: dict[str, Any] = field(default_factory=dict, repr=False)

    def data(self) -> GameData:
        if self._data is None:
            assert self._fetch is not None
            self._data = self._fetch()
        return self._data

    def keep(self, name: str, make: Callable[[], T]) -> T:
        """What ``make`` derives from this world, made once per world object (a preview and
        the run after it share it)."""
        if name not in self._kept:
            self._kept[name] = make()
        kept: T = self._kept[name]
        return kept

    def annex(self, name: str) -> bytes | None:
        if self.cache is None or self.key is None:
            return None
        return self.cache.read_annex(self.key, name)

    def save_annex(self, name: str, payload: bytes) -> None:
        if self.cache is not None and self.key is not None:
            self.cache.write_annex(self.key, name, payload)


@dataclass
class ValidationResult:
    problems: list[str]
    files: list[str]
    world: World | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def data(self) -> GameData | None:
        return self.world.data() if self.world is not None else None


def validate_gamedata(root: str | Path, *, cache: WorldCache | None = None) -> ValidationResult:
    """Parse and cross-check every file under ``root``; never raises for bad content."""
    root = Path(root)
    files = gamedata_files(root)
    names = [str(path.relative_to(root)) if root.is_dir() else path.name for path in files]
    shown = [str(path) for path in files]
    version = reader_version() if cache is not None else ""
    index, seen = None, None
    if cache is not None:
        from echoes_ops.gamedata.statindex import StatIndex, observe

        index, seen = StatIndex(cache, root, version), observe(files)
        key = index.known_key(names, seen)  # no file read when their stat says unchanged
        hashed = key is None
        if hashed:
            try:
                key = world_key(
                    [(n, file_digest(p)) for n, p in zip(names, files, strict=True)], version
                )
            except OSError:
                key = None  # an unreadable file: the read below reports it
        counts = cache.lookup(key) if key is not None else None
        if key is not None and counts is not None:
            if hashed:
                index.record(names, seen, key)
            fetch = _from_cache(cache, key, root, names)
            world = World(str(root), shown, counts, key, cache, _fetch=fetch)
            return ValidationResult([], shown, world)
    # not needed when the cache has it
    from echoes_ops.gamedata.models import GameData
    from echoes_ops.gamedata.reading import Reading

    with no_cycle_collection():
        run = Reading(files, names, frozenset())
        missing = run.problems.files - run.exact
        if missing:  # messages to give: read those files again, with lines
            run = Reading(files, names, frozenset(missing))
    if run.problems:
        return ValidationResult(run.problems.items, shown)
    data = GameData(
        locations=run.parsed["locations"],
        items=run.parsed["items"],
        npcs=run.parsed["npcs"],
        root=str(root),
    )
    key = None
    if cache is not None:
        key = world_key(run.digests, version)
        cache.store(key, data, names)
        if index is not None:
            index.record(names, seen, key)
    return ValidationResult([], shown, World(str(root), shown, data.counts(), key, cache, data))


def load_world(root: str | Path, *, cache: WorldCache | None = None) -> World:
    """Load and validate; raise :class:`GamedataError` listing every problem."""
    result = validate_gamedata(root, cache=cache)
    if result.world is None:
        count = len(result.problems)
        first = result.problems[0] if result.problems else "unknown problem"
        raise GamedataError(
            f"gamedata is invalid ({count} problem{'s' if count != 1 else ''}; first: {first})",
            result.problems,
        )
    return result.world


def load_gamedata(root: str | Path, *, cache: WorldCache | None = None) -> GameData:
    """Load and validate; raise :class:`GamedataError` listing every problem."""
    return load_world(root, cache=cache).data()


def _from_cache(
    cache: WorldCache, key: str, root: Path, names: list[str]
) -> Callable[[], GameData]:
    def fetch() -> GameData:
        try:
            with no_cycle_collection():
                return cache.load(key, str(root), names)
        except CacheMiss:
            # damaged or replaced since it was looked up: read the files themselves
            return load_gamedata(root)

    return fetch
