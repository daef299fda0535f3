"""Knowing a world is unchanged without reading it: the files' stat, as git's index does.

The cache key of a world is a hash over its files' contents (:func:`cache.world_key`), so
finding an unchanged world in the cache meant reading and hashing every byte (82 MB for the
220,000-entry world, about a third of a cached preload). Beside the cached worlds this keeps,
per gamedata folder, an index: each file's relative name with its size, mtime, ctime, inode
and device as they were when its content was hashed, the time that stat was taken, and the
content key that came out. When every file's stat is the same as recorded (no file added,
removed or renamed either), the key is taken from the index without reading the files.

What makes this safe:

- **ctime.** Writing a file sets its ctime to the current time, and no call sets it back
  (``touch -d``, ``cp -p`` or ``rsync -t`` can restore an mtime, not a ctime); replacing a
  file (an editor's save, ``mv``) gives it another inode as well.
- **Racy entries are not trusted** (git's "racily clean" rule). A file written in the same
  timestamp tick as the stat that recorded it could change again without its timestamps
  moving. An entry is trusted only when the file's mtime and ctime are at least
  :data:`RACY_MARGIN_NS` older than the moment its stat was taken (which also covers
  filesystems with timestamps as coarse as 2 s); any other file is hashed, and the index is
  written again, so it becomes trusted once it is old enough.
- **Anything unexpected is a miss**: a damaged or missing index (the cache checks its header
  and checksum), another echoes-ops version, a file that cannot be stat'ed. A miss only costs
  the hashing it saves.

Limits (the same as git's): a clock set back by more than the margin, or a network
filesystem whose server clock runs that far behind this machine's, can make a file changed
after the index was written look older than it is; ``--force`` (preload) or deleting the
cache folder rereads everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from echoes_ops.gamedata.cache import WorldCache

RACY_MARGIN_NS = 2_000_000_000
ANNEX = "stat"

Stat = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


class Observed:
    """The files' stats, and when they were taken (before any of them was read)."""

    __slots__ = ("stats", "taken_ns")

    def __init__(self, taken_ns: int, stats: list[Stat]) -> None:
        self.taken_ns = taken_ns
        self.stats = stats


def observe(files: list[Path]) -> Observed | None:
    """Stat every file; None when one cannot be stat'ed (the read reports it)."""
    taken = time.time_ns()
    try:
        stats = [_stat(path) for path in files]
    except OSError:
        return None
    return Observed(taken, stats)


def _stat(path: Path) -> Stat:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class StatIndex:
    """The index of one gamedata folder for one reader version, kept in ``cache``."""

    def __init__(self, cache: WorldCache, root: Path, version: str) -> None:
        self.cache = cache
        self.version = version
        self.root = str(root.absolute())
        self.name = hashlib.sha256(f"stat-index\0{self.root}".encode()).hexdigest()

    def known_key(self, names: list[str], seen: Observed | None) -> str | None:
        """The content key recorded for these files, if every one is provably unchanged."""
        if seen is None:
            return None
        payload = self.cache.read_annex(self.name, ANNEX)
        if payload is None:
            return None
        try:
            index = json.loads(payload)
            taken, recorded, key = int(index["taken_ns"]), index["files"], index["key"]
            if index["version"] != self.version or index["root"] != self.root:
                return None
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(key, str) or not isinstance(recorded, list):
            return None
        if len(recorded) != len(names):
            return None
        trusted_before = taken - RACY_MARGIN_NS
        for name, stat, entry in zip(names, seen.stats, recorded, strict=True):
            if entry != [name, *stat]:
                return None  # changed, added, removed or renamed
            if stat[1] >= trusted_before or stat[2] >= trusted_before:
                return None  # racy: written too close to when it was recorded
        return key

    def record(self, names: list[str], seen: Observed | None, key: str) -> None:
        """Remember that the files as ``seen`` (stat'ed before they were read) hold ``key``."""
        if seen is None:
            return
        payload = {
            "version": self.version,
            "root": self.root,
            "taken_ns": seen.taken_ns,
            "key": key,
            "files": [[name, *stat] for name, stat in zip(names, seen.stats, strict=True)],
        }
        self.cache.write_annex(self.name, ANNEX, json.dumps(payload).encode())
