"""Preload static game data into Redis, atomically (docs/design.md, decision 4).

1. Encode the dataset and hash it; an unchanged dataset is a no-op unless forced.
2. Diff it against Redis (SCAN per family, pipelined HGETALL of the keys both have).
3. Refuse if the server lacks memory headroom for the keys to write (estimated from
   ``MEMORY USAGE`` of probe keys, ``preload_memory``).
4. Stream one MULTI/EXEC transaction: DEL of every key to (re)write and of ids that left
   gamedata, an HSET per key, and the version record. Commands are C-packed and streamed
   in chunks (see ``client.bulk``), so the cost is the server's, not Python's.
5. Verify after EXEC that every key and the version record are there (an ``allkeys-*``
   policy can evict them at once): a loss is :class:`DataLostError` naming it per kind.

The lock (``lock:echoes-ops.preload``) has a short TTL renewed while the run lasts, with
the holder's host and pid beside it (``lockowner``), so a run that was cut off blocks the
next one briefly and visibly. A stop token (SIGINT/SIGTERM in the CLI) is honoured at step
boundaries; the last one is before the chunk that carries EXEC.

Why this is atomic and never half-written: Redis queues the transaction and runs it as one
unit at EXEC, so readers see the old dataset or the new one, never a mix and never a gap.
If the connection drops before EXEC the server discards the queue (nothing applied); if any
command is refused while queuing (out of memory, ACL) EXEC aborts the whole transaction.
The DEL in front of the HSETs means no queued write can fail on a wrong type at EXEC time,
and drops fields that left a record. The server is held only while EXEC runs (about
3 microseconds per key, measured in benchmarks/preload.py).

With ``online=True`` (``preload --online``), and always on Redis Cluster, where one
transaction cannot span slots, step 4 is the stepped writer of ``preload_online``: the same
diff in steps inside the server-time budget, the version record last, then a verify pass
that re-reads what was written; the result says how long readers could see a mix.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.exceptions import RedisError

from echoes_ops import __version__
from echoes_ops.client.bulk import Command, bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_primary
from echoes_ops.client.slots import group_by_slot
from echoes_ops.contract import codec, keys, static
from echoes_ops.contract.static import StaticKind
from echoes_ops.errors import DataLostError, Interrupted, OpsError
from echoes_ops.gamedata import World
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations import lockowner, preload_memory, preload_online, static_data
from echoes_ops.operations import preload_checks as checks
from echoes_ops.operations.eviction import memory_state
from echoes_ops.operations.preload_memory import MemoryEstimate
from echoes_ops.operations.preload_online import OnlineReport
from echoes_ops.operations.static_data import (
    Encoded,
    Flat,
    KindDiff,
    content_digest,
    diff_static,
    encode_gamedata,
    flatten,
    read_version,
)
from echoes_ops.operations.stop import StopToken
from echoes_ops.primitives import lock
from echoes_ops.primitives.lease import Lease, LockLostError

PRELOAD_LOCK = "echoes-ops.preload"
WRITE_BATCH = 1000

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
    verified: dict[str, Any] = field(default_factory=dict)
    mode: str = "atomic"  # or "online": the stepped writer (preload_online)
    online: OnlineReport | None = None

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
            "verified": self.verified,
            "mode": self.mode,
            "online": self.online.as_dict() if self.online is not None else None,
            "elapsed_s": round(self.elapsed_s, 3),
        }


async def preload(
    r: AnyRedis,
    data: GameData | World,
    *,
    operator: str,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    batch: int = WRITE_BATCH,
    stop: StopToken | None = None,
    online: bool = False,
    verify: bool = True,
) -> PreloadResult:
    """Make the static caches equal ``data``; see the module docstring for the steps.

    Given a :class:`World` from the gamedata cache, an unchanged dataset is recognised from
    what an earlier preload of the same world noted beside it (content hash and keys),
    without reading the world itself.

    ``stop`` is checked at every step boundary; the last one before EXEC is the last
    chunk of the streamed transaction, so a stop there writes nothing, and a stop after
    it reports the committed version (both as :class:`Interrupted`).

    ``online`` (implied on Redis Cluster) writes the diff with the stepped writer instead
    of one transaction (``preload_online``); ``verify`` then re-reads what was written."""
    token = stop or StopToken()
    online = online or preload_online.is_cluster(r)
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
    encoded = (
        world.keep("preload-encoded", lambda: encode_gamedata(data))
        if world is not None
        else encode_gamedata(data)
    )
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
        mode="online" if online else "atomic",
    )
    if previous == digest.sha256 and not force and await _all_present(r, static_keys):
        result.skipped = True
        result.elapsed_s = time.perf_counter() - started
        return result

    if dry_run:
        to_write, _ = await _plan(r, encoded, result, force=force)
        estimate = await _estimate(r, data, result, to_write, probe=False)
        result.estimated_bytes = estimate.data_bytes
        result.elapsed_s = time.perf_counter() - started
        return result

    token.check("nothing written")
    lease = await lockowner.take(r, PRELOAD_LOCK, operator=operator, reason="preload")
    if lease is None:
        raise await lockowner.busy(r, PRELOAD_LOCK, "preload")
    committed = False
    try:
        async with lease:
            # diff under the lock, so a concurrent run cannot make it stale
            to_write, to_remove = await _plan(r, encoded, result, force=force)
            token.check("nothing written (stopped after the diff)")
            estimate = await _estimate(r, data, result, to_write, probe=True)
            if online:  # nothing is queued: each step is applied as it arrives
                estimate = MemoryEstimate(estimate.data_bytes, 0, estimate.method)
            result.estimated_bytes = estimate.data_bytes
            before = await memory_state(r)
            if preload_online.is_cluster(r):
                # each primary takes its slots' share (spread evenly by CRC16; 20% margin)
                states = await each_primary(r, memory_state)
                share = MemoryEstimate(estimate.data_bytes * 12 // (10 * len(states)), 0, "")
                for state in states:
                    checks.check_headroom(state, share)
            else:
                checks.check_headroom(before, estimate)
            token.check("nothing written (stopped before the transaction)")
            version_fields = {
                "content_hash": digest.sha256,
                "loaded_at": f"{time.time():.3f}",
                "operator": operator,
                "tool_version": __version__,
                "source": data.root,
                **{name: str(count) for name, count in data.counts().items()},
            }
            if online:
                result.online = await preload_online.write_online(
                    r,
                    to_write,
                    to_remove,
                    flatten(version_fields),
                    location_ids=sorted(data.locations),
                    stop=token,
                    lease=lease,
                    progress=progress,
                    previous=previous,
                )
            else:
                commands = _transaction(
                    to_write,
                    to_remove,
                    version_fields,
                    location_ids=sorted(data.locations),
                    batch=batch,
                )
                replies = await _swap(
                    r, commands, batch, progress, token, lease, digest.sha256, previous
                )
                checks.refused_by_server(replies)
            committed = True
            result.keys_written = len(to_write)
            result.keys_removed = len(to_remove)
            if result.online is None:
                written = {"version": digest.sha256, "keys_written": len(to_write)}
                result.verified = await checks.verify(r, encoded, digest.sha256, before, written)
            elif verify:
                result.verified = await _verify_online(
                    r,
                    encoded,
                    to_remove,
                    sorted(data.locations),
                    flatten(version_fields),
                    result,
                    token,
                    lease,
                )
            else:
                result.verified = {"verify": "skipped"}
    except LockLostError as exc:
        if not committed:
            raise
        # the new version is in place; what is unknown is whether another preload took the
        # lock afterwards, and (if it was lost before the verify pass ended) the verify
        result.verified = {
            **(result.verified or {"verify": "not run"}),
            "lock_lost_after_commit": str(exc),
        }
    except OpsError as exc:
        if not (exc.detail or {}).get("cut_off"):
            raise
        raise await checks.with_lock_state(
            r,
            exc,
            name=PRELOAD_LOCK,
            token=lease.token,
            owner=lock.owner_of(lease.token),
            ttl=lease.ttl,
        ) from exc
    result.elapsed_s = time.perf_counter() - started
    token.check(
        f"committed version {digest.sha256[:12]} ({result.keys_written:,} keys written, "
        f"{result.keys_removed:,} removed, verified)",
        {"version": digest.sha256, "committed": True, "keys_written": result.keys_written},
    )
    return result


async def _swap(
    r: AnyRedis,
    commands: list[Command],
    batch: int,
    progress: Progress | None,
    token: StopToken,
    lease: Lease,
    version: str,
    previous: str | None,
) -> list[Any]:
    """Stream the transaction; stop (nothing written) before its last chunk, which carries
    EXEC, if asked to or if the lock was lost."""
    chunks = -(-len(commands) // batch)
    started = 0

    def before_chunk() -> bool:
        nonlocal started
        if token() or lease.lost.is_set():
            return True
        started += 1
        return False

    try:
        return await bulk(
            r, commands, chunk=batch, progress=progress, stop=before_chunk, raise_on_error=False
        )
    except Interrupted:
        if token():
            raise token.stopped(
                "nothing written (the transaction was discarded before EXEC)",
                {"committed": False},
            ) from None
        raise LockLostError(
            f"lost {lease.handle.key} while sending the transaction; nothing written "
            "(the transaction was discarded before EXEC)"
        ) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise await checks.cut_off(
            r,
            exc,
            exec_sent=started == chunks,
            version=version,
            previous=previous,
        ) from exc


async def _verify_online(
    r: AnyRedis,
    encoded: Encoded,
    removed: list[str],
    location_ids: list[str],
    version_fields: Flat,
    result: PreloadResult,
    token: StopToken,
    lease: Lease,
) -> dict[str, Any]:
    """The verify pass of the stepped writer. On Redis Cluster a failover during the run
    can drop a primary's last writes (replication is asynchronous, the promoted replica may
    not have them): what still differs is then written once more, version record last,
    and verified again; a second difference is :class:`DataLostError`."""
    report = result.online
    assert report is not None
    try:
        return await preload_online.verify_online(
            r, encoded, removed, location_ids, result.version, report
        )
    except DataLostError:
        if not preload_online.is_cluster(r):
            raise
    scratch = PreloadResult(result.version, None, dry_run=False, skipped=False)
    to_write, to_remove = await _plan(r, encoded, scratch, force=False)
    again = await preload_online.write_online(
        r,
        to_write,
        to_remove,
        version_fields,
        location_ids=location_ids,
        stop=token,
        lease=lease,
        previous=result.version,
    )
    report.steps += again.steps
    report.longest_step_us = max(report.longest_step_us, again.longest_step_us)
    checked = await preload_online.verify_online(
        r, encoded, [*removed, *to_remove], location_ids, result.version, report
    )
    return {**checked, "rewritten_after_verify": len(to_write) + len(to_remove)}


async def _estimate(
    r: AnyRedis,
    data: GameData,
    result: PreloadResult,
    to_write: list[tuple[str, Flat]],
    *,
    probe: bool,
) -> MemoryEstimate:
    added = sum(len(d.added) - len(d.removed) for d in result.diffs.values())
    if not probe:  # a dry run writes nothing, not even probes
        model = preload_memory.model_bytes(to_write, sorted(data.locations))
        return MemoryEstimate(model, 0, "model")
    return await preload_memory.estimate(
        r,
        to_write,
        sorted(data.locations),
        keys_before=int(await r.dbsize()),
        keys_added=max(0, added),
    )


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
        found = _Memo(str(memo["sha256"]), memo["keys"])
    except (ValueError, TypeError, KeyError):
        return None  # not ours: computed again below
    # the annex is checksummed by the cache; a list of strings as written (not copied key
    # by key: it is as long as the world)
    return found if type(found.keys) is list else None


def _write_memo(world: World, memo: _Memo) -> None:
    world.save_annex(_memo_name(), orjson.dumps({"sha256": memo.sha256, "keys": memo.keys}))


async def _all_present(r: AnyRedis, static_keys: list[str]) -> bool:
    """Whether every static key still exists (eviction or a manual delete makes a gap
    that an unchanged version record would hide). Multi-key EXISTS, 1000 keys a call."""
    wanted = [*static_keys, keys.LOCATION_INDEX_KEY]
    groups = list(group_by_slot(wanted).values()) if preload_online.is_cluster(r) else [wanted]
    commands: list[Command] = [
        ("EXISTS", *group[i : i + 1000]) for group in groups for i in range(0, len(group), 1000)
    ]
    replies = await preload_online.send(r, commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return sum(int(n) for n in replies) == len(wanted)


async def _plan(
    r: AnyRedis, encoded: Encoded, result: PreloadResult, *, force: bool
) -> tuple[list[tuple[str, Flat]], list[str]]:
    """Diff against Redis; fill ``result`` with the diff."""
    diffs = await diff_static(r, encoded)
    result.diffs = {kind.label: diff for kind, (diff, _) in diffs.items()}
    to_write = _keys_to_write(encoded, diffs, force=force)
    to_remove = [key for diff, _ in diffs.values() for key in diff.remove_keys]
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
