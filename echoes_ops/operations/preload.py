"""Preload static game data into Redis, atomically (DESIGN.md decision 4).

1. Encode the dataset and hash it; an unchanged dataset is a no-op unless forced.
2. Diff it against Redis (SCAN per family, pipelined HGETALL of the keys both have).
3. Refuse if the server lacks memory headroom for the keys to write.
4. Stream one MULTI/EXEC transaction: DEL of every key to (re)write and of ids that left
   gamedata, an HSET per key, and the version record. Commands are C-packed and streamed
   in chunks (see ``client.bulk``), so the cost is the server's, not Python's.

Why this is atomic and never half-written: Redis queues the transaction and runs it as one
unit at EXEC, so readers see the old dataset or the new one, never a mix and never a gap.
If the connection drops before EXEC the server discards the queue (nothing applied); if any
command is refused while queuing (out of memory, ACL) EXEC aborts the whole transaction.
The DEL in front of the HSETs means no queued write can fail on a wrong type at EXEC time,
and drops fields that left a record. The server is held only while EXEC runs (about
3 microseconds per key, measured in benchmarks/preload.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from echoes_ops import __version__
from echoes_ops.client.bulk import Command, bulk
from echoes_ops.contract import codec, keys, static
from echoes_ops.contract.static import StaticKind
from echoes_ops.errors import BusyError, RefusedError
from echoes_ops.gamedata import World
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations import static_data
from echoes_ops.operations.static_data import (
    Digest,
    Encoded,
    Flat,
    KindDiff,
    content_digest,
    diff_static,
    encode_gamedata,
    flatten,
    read_version,
)
from echoes_ops.primitives import lock

PRELOAD_LOCK = "echoes-ops.preload"
PRELOAD_LOCK_TTL = 600.0
WRITE_BATCH = 1000
# Refuse when used memory plus the estimated new data would pass this share of maxmemory.
HEADROOM_SHARE = 0.9
# Rough per-key overhead of a small hash (listpack) in Redis 7, on top of its data.
KEY_OVERHEAD = 96

Progress = Callable[[int, int], None]


@dataclass
class PreloadResult:
    version: str
    previous_version: str | None
    dry_run: bool
    skipped: bool
    diffs: dict[str, KindDiff] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    keys_written: int = 0
    keys_removed: int = 0
    estimated_bytes: int = 0
    elapsed_s: float = 0.0

    @property
    def changed(self) -> bool:
        return any(not d.clean for d in self.diffs.values())

    def as_dict(self, *, examples: int | None = 20) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous_version": self.previous_version,
            "dry_run": self.dry_run,
            "skipped": self.skipped,
            "counts": self.counts,
            "diff": {kind: d.as_dict(examples=examples) for kind, d in self.diffs.items()},
            "keys_written": self.keys_written,
            "keys_removed": self.keys_removed,
            "estimated_bytes": self.estimated_bytes,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def estimate_bytes(digest: Digest, total_keys: int, keys_to_write: int) -> int:
    """Rough memory the keys to write will take: their share of the dataset's encoded
    size plus a per-key overhead."""
    if total_keys <= 0 or keys_to_write <= 0:
        return 0
    return digest.size * keys_to_write // total_keys + KEY_OVERHEAD * keys_to_write


async def check_headroom(r: Redis, needed: int) -> None:
    """Raise :class:`RefusedError` if ``needed`` more bytes would crowd maxmemory."""
    info = await r.info("memory")
    maxmemory = int(info.get("maxmemory", 0) or 0)
    if maxmemory <= 0:
        return
    used = int(info.get("used_memory", 0) or 0)
    limit = int(maxmemory * HEADROOM_SHARE)
    if used + needed > limit:
        raise RefusedError(
            f"not enough memory headroom: used {used:,} B + about {needed:,} B for the new "
            f"data exceeds {HEADROOM_SHARE:.0%} of maxmemory {maxmemory:,} B; nothing written",
            hint="raise maxmemory or free memory, then retry",
        )


async def preload(
    r: Redis,
    data: GameData | World,
    *,
    operator: str,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    batch: int = WRITE_BATCH,
) -> PreloadResult:
    """Make the static caches equal ``data``; see the module docstring for the steps.

    Given a :class:`World` from the gamedata cache, an unchanged dataset is recognised from
    what an earlier preload of the same world noted beside it (content hash and keys),
    without reading the world itself."""
    started = time.perf_counter()
    world = data if isinstance(data, World) else None
    if world is not None and not force:
        memo = _read_memo(world)
        if memo is not None:
            previous = (await read_version(r)).get("content_hash")
            if previous == memo.sha256 and await _all_present(r, memo.keys):
                return PreloadResult(
                    version=memo.sha256,
                    previous_version=previous,
                    dry_run=dry_run,
                    skipped=True,
                    counts=dict(world.counts),
                    elapsed_s=time.perf_counter() - started,
                )
    data = world.data() if world is not None else data
    assert isinstance(data, GameData)
    encoded = encode_gamedata(data)
    digest = content_digest(encoded)
    static_keys = [key for mappings in encoded.values() for key in mappings]
    if world is not None:
        _write_memo(world, _Memo(digest.sha256, static_keys))
    stored = await read_version(r)
    previous = stored.get("content_hash")
    result = PreloadResult(
        version=digest.sha256,
        previous_version=previous,
        dry_run=dry_run,
        skipped=False,
        counts=data.counts(),
    )
    if previous == digest.sha256 and not force and await _all_present(r, static_keys):
        result.skipped = True
        result.elapsed_s = time.perf_counter() - started
        return result

    if dry_run:
        await _plan(r, encoded, digest, result, force=force)
        result.elapsed_s = time.perf_counter() - started
        return result

    handle = await lock.try_acquire(
        r, PRELOAD_LOCK, lock.operator_owner(operator), PRELOAD_LOCK_TTL
    )
    if handle is None:
        raise BusyError("another preload is running (lock:echoes-ops.preload is held)")
    try:
        # diff under the lock, so a concurrent run cannot make it stale
        to_write, to_remove = await _plan(r, encoded, digest, result, force=force)
        await check_headroom(r, result.estimated_bytes)
        version_fields = {
            "content_hash": digest.sha256,
            "loaded_at": f"{time.time():.3f}",
            "operator": operator,
            "tool_version": __version__,
            "source": data.root,
            **{name: str(count) for name, count in data.counts().items()},
        }
        commands = _transaction(
            to_write, to_remove, version_fields, location_ids=sorted(data.locations), batch=batch
        )
        await bulk(r, commands, chunk=batch, progress=progress)
        result.keys_written = len(to_write)
        result.keys_removed = len(to_remove)
    finally:
        await lock.release(r, handle.key, handle.token)
    result.elapsed_s = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class _Memo:
    """What a preload derives from a world: its content hash and its static keys."""

    sha256: str
    keys: list[str]


def _memo_name() -> str:
    """The annex name, tied to the code that encodes a world (a change there must not
    reuse a hash computed by the old code)."""
    digest = hashlib.sha256(__version__.encode())
    for module in (static_data, codec, static, keys):
        digest.update(Path(str(module.__file__)).read_bytes())
    return f"preload-{digest.hexdigest()[:16]}"


def _read_memo(world: World) -> _Memo | None:
    payload = world.annex(_memo_name())
    if payload is None:
        return None
    try:
        memo = orjson.loads(payload)
        found = _Memo(str(memo["sha256"]), [str(key) for key in memo["keys"]])
    except (ValueError, TypeError, KeyError):
        return None  # not ours: computed again below
    return found


def _write_memo(world: World, memo: _Memo) -> None:
    world.save_annex(_memo_name(), orjson.dumps({"sha256": memo.sha256, "keys": memo.keys}))


async def _all_present(r: Redis, static_keys: list[str]) -> bool:
    """Whether every static key still exists (eviction or a manual delete makes a gap
    that an unchanged version record would hide). Multi-key EXISTS, 1000 keys a call."""
    wanted = [*static_keys, keys.LOCATION_INDEX_KEY]
    commands = [("EXISTS", *wanted[i : i + 1000]) for i in range(0, len(wanted), 1000)]
    found = sum(int(n) for n in await bulk(r, commands))
    return found == len(wanted)


async def _plan(
    r: Redis, encoded: Encoded, digest: Digest, result: PreloadResult, *, force: bool
) -> tuple[list[tuple[str, Flat]], list[str]]:
    """Diff against Redis; fill ``result`` with the diff and the memory estimate."""
    diffs = await diff_static(r, encoded)
    result.diffs = {kind.label: diff for kind, (diff, _) in diffs.items()}
    to_write = _keys_to_write(encoded, diffs, force=force)
    to_remove = [key for diff, _ in diffs.values() for key in diff.remove_keys]
    total_keys = sum(len(mappings) for mappings in encoded.values())
    result.estimated_bytes = estimate_bytes(digest, total_keys, len(to_write))
    return to_write, to_remove


def _keys_to_write(
    encoded: Encoded, diffs: dict[StaticKind, tuple[KindDiff, set[str]]], *, force: bool
) -> list[tuple[str, Flat]]:
    out: list[tuple[str, Flat]] = []
    for kind, mappings in encoded.items():
        diff, _ = diffs[kind]
        if force or len(diff.write_keys) == len(mappings):
            out.extend(mappings.items())
        else:
            out.extend((key, mappings[key]) for key in diff.write_keys)
    return out


def _transaction(
    to_write: list[tuple[str, Flat]],
    to_remove: list[str],
    version: dict[str, str],
    *,
    location_ids: list[str],
    batch: int,
) -> list[Command]:
    """MULTI, DELs (in batches), one HSET per key, the location index, the version record,
    EXEC."""
    commands: list[Command] = [("MULTI",)]
    doomed = [key for key, _ in to_write] + to_remove
    for start in range(0, len(doomed), batch):
        commands.append(("DEL", *doomed[start : start + batch]))
    commands.extend([("HSET", key, *fields) for key, fields in to_write])
    commands.append(("DEL", keys.LOCATION_INDEX_KEY))
    for start in range(0, len(location_ids), batch):
        commands.append(("SADD", keys.LOCATION_INDEX_KEY, *location_ids[start : start + batch]))
    commands.append(("DEL", keys.GAMEDATA_VERSION_KEY))
    commands.append(("HSET", keys.GAMEDATA_VERSION_KEY, *flatten(version)))
    commands.append(("EXEC",))
    return commands
