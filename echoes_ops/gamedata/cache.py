"""A cache of validated gamedata worlds, keyed by what their files hold.

An unchanged world (cron warmups, ``doctor``, repeated preloads) is then read back instead of
parsed and validated again. The key is a SHA-256 over the reader's own version (this
package's source, PyYAML's version, the cache format) and every file's relative name and
content hash: edit, add, remove or rename a file, or upgrade echoes-ops, and the key changes.
Only valid worlds are stored.

Where: ``ECHOES_OPS_CACHE_DIR`` (``off`` turns the cache off), else
``$XDG_CACHE_HOME/echoes-ops``, else ``~/.cache/echoes-ops``; created private (0700).

A world is one file, ``<key>.world``: a fixed-size JSON header (format, key, counts, the
body's size and SHA-256) and a body of JSON lines, one entry each, so it is read back one
entry at a time. Files are written to a temporary name in the same folder and renamed into
place, so a reader sees a whole file or none, whatever runs at the same time. A reader checks
the header, the size and the checksum, and treats anything that does not match as a miss.
Derived data that upper layers compute from a world (preload's content hash and key list)
is kept beside it as ``<key>.<name>`` annexes in the same format. The newest
:data:`MAX_WORLDS` worlds are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from echoes_ops import __version__

if TYPE_CHECKING:
    # the models are imported when a world is read back or stored: a lookup (an unchanged
    # world's whole use of the cache) needs the header alone
    from echoes_ops.gamedata.models import GameData, Item, Location, Npc

FORMAT = 1
OFF = "off"
MAX_WORLDS = 4
HEADER_SIZE = 1024
WORLD_SUFFIX = ".world"
KINDS = ("locations", "items", "npcs")


class CacheMiss(Exception):
    """The cached file is missing, from another version, or damaged."""


def default_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/echoes-ops``, else ``~/.cache/echoes-ops`` (the configured
    ``cache_dir`` / ``ECHOES_OPS_CACHE_DIR`` wins over both; ``off`` turns the cache off)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "echoes-ops"


def reader_version() -> str:
    """What the meaning of a cached world depends on besides the files: this package's
    source (validation rules, models, readers), id rules, PyYAML, yaml-rs, the cache
    format."""
    from importlib.util import find_spec

    digest = hashlib.sha256(f"{FORMAT}\0{__version__}\0".encode())
    here = Path(__file__).resolve().parent
    sources = [*sorted(here.glob("*.py")), here.parent / "contract" / "ids.py"]
    # PyYAML's version, without importing it (a cached world needs no parser): its
    # __init__.py, which names the version, is hashed with the rest
    spec = find_spec("yaml")
    if spec is not None and spec.origin is not None:
        sources.append(Path(spec.origin))
    native = find_spec("yaml_rs")  # its version is in its installed metadata's name
    if native is not None and native.origin is not None:
        site = Path(native.origin).parent.parent
        digest.update(" ".join(sorted(p.name for p in site.glob("yaml_rs-*"))).encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def world_key(named_digests: list[tuple[str, str]], version: str) -> str:
    """The key of a world from its files' relative names and content hashes."""
    digest = hashlib.sha256(version.encode())
    for name, content in named_digests:
        digest.update(f"\n{name}\0{content}".encode())
    return digest.hexdigest()


class WorldCache:
    """The cache folder (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- worlds -------------------------------------------------------------------------

    def lookup(self, key: str) -> dict[str, int] | None:
        """The counts of the cached world ``key``, or None when it is not (validly) there."""
        try:
            # header and size only: the verdict rests on the key (the files' content), and
            # the body is checked when it is read
            with self._open(key, WORLD_SUFFIX, verify=False) as (header, _):
                counts = header.get("counts")
        except CacheMiss:
            return None
        if not isinstance(counts, dict) or set(counts) != set(KINDS):
            return None
        return {kind: int(counts[kind]) for kind in KINDS}

    def load(self, key: str, root: str, files: list[str]) -> GameData:
        """The cached world ``key``; raises :class:`CacheMiss` if it is not intact."""
        import orjson  # only when a world is read back: a lookup needs the header alone

        from echoes_ops.gamedata.models import GameData, Source
        from echoes_ops.gamedata.records import item, location, npc

        parsed: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        builders = (location, item, npc)
        with self._open(key, WORLD_SUFFIX) as (_, body):
            try:
                for line in body:
                    kind, file_index, start, record = orjson.loads(line)
                    model = builders[kind](record, Source(files[file_index], start))
                    parsed[KINDS[kind]][model.id] = model
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise CacheMiss(f"damaged entry: {exc}") from None
        return GameData(
            locations=parsed["locations"], items=parsed["items"], npcs=parsed["npcs"], root=root
        )

    def store(self, key: str, data: GameData, files: list[str]) -> None:
        """Keep ``data`` under ``key`` (``files``: the relative names its sources are in)."""
        import orjson

        index = {name: i for i, name in enumerate(files)}

        def lines() -> Iterator[bytes]:
            kinds: tuple[Mapping[str, Location | Item | Npc], ...] = (
                data.locations,
                data.items,
                data.npcs,
            )
            for kind, models in enumerate(kinds):
                for model in models.values():
                    where = index.get(model.source.file, 0)
                    record = [kind, where, model.source.line, model.to_record()]
                    yield orjson.dumps(record) + b"\n"

        if self._write(key, WORLD_SUFFIX, {"counts": data.counts()}, lines()):
            self._prune(keep=key)

    # -- annexes ------------------------------------------------------------------------

    def read_annex(self, key: str, name: str) -> bytes | None:
        try:
            with self._open(key, f".{name}") as (_, body):
                return body.read()
        except CacheMiss:
            return None

    def write_annex(self, key: str, name: str, payload: bytes) -> None:
        self._write(key, f".{name}", {}, iter([payload]))

    # -- files --------------------------------------------------------------------------

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    def _open(self, key: str, suffix: str, *, verify: bool = True) -> _Opened:
        return _Opened(self._path(key, suffix), key, suffix, verify=verify)

    def _write(self, key: str, suffix: str, extra: dict[str, Any], chunks: Iterator[bytes]) -> bool:
        """Write atomically; False when the folder cannot be written (the cache is then
        simply not used: it only ever saves time)."""
        import tempfile

        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=f".{key[:16]}-", suffix=".tmp", dir=self.directory
            )
        except OSError:
            return False
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(b" " * HEADER_SIZE)
                digest, size = hashlib.sha256(), 0
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                header = json.dumps(
                    {
                        "format": FORMAT,
                        "key": key,
                        "kind": suffix,
                        "body_size": size,
                        "body_sha256": digest.hexdigest(),
                        **extra,
                    }
                ).encode()
                if len(header) >= HEADER_SIZE:
                    raise OSError("cache header too large")
                out.seek(0)
                out.write(header.ljust(HEADER_SIZE - 1) + b"\n")
            os.replace(temporary, self._path(key, suffix))
        except OSError:
            with suppress(OSError):
                os.unlink(temporary)
            return False
        return True

    def _prune(self, keep: str) -> None:
        """Keep the newest :data:`MAX_WORLDS` worlds (``keep``, just written, among them)."""
        try:
            worlds = sorted(
                (p.stat().st_mtime_ns, p.name)
                for p in self.directory.glob(f"*{WORLD_SUFFIX}")
                if p.name != f"{keep}{WORLD_SUFFIX}"
            )
            for _, name in worlds[: max(0, len(worlds) - (MAX_WORLDS - 1))]:
                for path in self.directory.glob(f"{name[: -len(WORLD_SUFFIX)]}.*"):
                    path.unlink(missing_ok=True)
        except OSError:
            return  # another process is pruning at the same time; the next write prunes


class _Opened:
    """A cache file checked against its header; the body is read line by line and its
    checksum verified when the ``with`` block ends without error."""

    def __init__(self, path: Path, key: str, suffix: str, *, verify: bool) -> None:
        self.path = path
        self.key = key
        self.suffix = suffix
        self.verify = verify
        self.handle: IO[bytes] | None = None
        self.body: _Body | None = None

    def __enter__(self) -> tuple[dict[str, Any], _Body]:
        try:
            self.handle = self.path.open("rb")
            raw = self.handle.read(HEADER_SIZE)
            size = os.fstat(self.handle.fileno()).st_size
        except OSError as exc:
            raise CacheMiss(str(exc)) from None
        try:
            header = json.loads(raw)
        except ValueError:
            header = None
        if (
            len(raw) != HEADER_SIZE
            or not isinstance(header, dict)
            or header.get("format") != FORMAT
            or header.get("key") != self.key
            or header.get("kind") != self.suffix
            or header.get("body_size") != size - HEADER_SIZE
        ):
            self._close()
            raise CacheMiss(f"{self.path.name}: not a cache file of this version")
        self.body = _Body(self.handle, str(header.get("body_sha256")))
        return header, self.body

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if error is None and self.verify and self.body is not None and not self.body.intact():
                raise CacheMiss(f"{self.path.name}: checksum mismatch")
        finally:
            self._close()

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class _Body:
    """The body of a cache file, hashed as it is read."""

    def __init__(self, handle: IO[bytes], expected: str) -> None:
        self.handle = handle
        self.expected = expected
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for line in self.handle:
            self.digest.update(line)
            yield line

    def read(self) -> bytes:
        data = self.handle.read()
        self.digest.update(data)
        return data

    def intact(self) -> bool:
        self.digest.update(self.handle.read())  # whatever was not consumed
        return self.digest.hexdigest() == self.expected
