"""How preload knows a world is already in Redis without reading it (#17).

A preload notes beside a cached world (an annex of :class:`~echoes_ops.gamedata.World`)
the content hash of its encoding and its static keys. The next preload of the same world
(the same files: the gamedata cache's key) compares that hash with the version record and
checks that every key still exists (eviction or a manual delete makes a gap that an
unchanged version record would hide); if both hold, the world is neither read, nor
encoded, nor diffed. The note's name is tied to the code that encodes a world, so a change
there never reuses a hash the old code computed. No Redis client here: a plain
``preload``'s reading child (cli/readahead.py) notes the world it read, and the command
then finds the note.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import orjson

from echoes_ops import __version__
from echoes_ops.gamedata.loader import World
from echoes_ops.operations.static_encoding import Digest, Encoded, content_digest, encode_gamedata

# the modules whose code decides how a world is encoded into keys and hashes
ENCODING_MODULES = (
    "echoes_ops.operations.static_encoding",
    "echoes_ops.contract.codec",
    "echoes_ops.contract.static",
    "echoes_ops.contract.keys",
)


@dataclass(frozen=True)
class Memo:
    """What a preload derives from a world: its content hash and its static keys."""

    sha256: str
    keys: list[str]


def memo_name() -> str:
    """The annex name, tied to the code that encodes a world (a change there must not
    reuse a hash computed by the old code). The modules' files are read, not imported."""
    digest = hashlib.sha256(__version__.encode())
    for module in ENCODING_MODULES:
        spec = find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin is None:
            raise ImportError(f"cannot locate {module}")
        digest.update(Path(origin).read_bytes())
    return f"preload-{digest.hexdigest()[:16]}"


def read_memo(world: World) -> Memo | None:
    payload = world.annex(memo_name())
    if payload is None:
        return None
    try:
        memo = orjson.loads(payload)
        found = Memo(str(memo["sha256"]), memo["keys"])
    except (ValueError, TypeError, KeyError):
        return None  # not ours: computed again by the caller
    # the annex is checksummed by the cache; a list of strings as written (not copied key
    # by key: it is as long as the world)
    return found if type(found.keys) is list else None


def write_memo(world: World, memo: Memo) -> None:
    world.save_annex(memo_name(), orjson.dumps({"sha256": memo.sha256, "keys": memo.keys}))


def noted(world: World) -> tuple[Encoded, Digest]:
    """The world encoded (once per world object) and its content digest, noted beside it
    for the next preload of the same files."""
    encoded = world.keep("preload-encoded", lambda: encode_gamedata(world.data()))
    digest = content_digest(encoded)
    write_memo(world, Memo(digest.sha256, [key for m in encoded.values() for key in m]))
    return encoded, digest
