"""Preload when Redis does not already hold the world (or with ``--force``/``--dry-run``):
the diff, the memory estimate, and under the preload lock the write (the atomic swap of
:mod:`~echoes_ops.operations.preload_atomic`, or the stepped writer of
:mod:`~echoes_ops.operations.preload_online`) and its verify pass. The steps are those of
:mod:`echoes_ops.operations.preload`, which imports this module only when there is
something to diff or write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from echoes_ops import __version__
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_primary
from echoes_ops.contract.static import StaticKind
from echoes_ops.errors import DataLostError, OpsError
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations import lockowner, preload_memory, preload_online
from echoes_ops.operations import preload_checks as checks
from echoes_ops.operations.eviction import memory_state
from echoes_ops.operations.preload import PRELOAD_LOCK, PreloadResult, Progress
from echoes_ops.operations.preload_atomic import swap, transaction
from echoes_ops.operations.preload_memory import MemoryEstimate
from echoes_ops.operations.preload_send import is_cluster
from echoes_ops.operations.static_data import Encoded, Flat, KindDiff, diff_static, flatten
from echoes_ops.operations.stop import StopToken
from echoes_ops.primitives import lock
from echoes_ops.primitives.lease import Lease, LockLostError


async def write(
    r: AnyRedis,
    data: GameData,
    encoded: Encoded,
    result: PreloadResult,
    *,
    operator: str,
    token: StopToken,
    force: bool,
    online: bool,
    verify: bool,
    progress: Progress | None,
    batch: int,
    on_diff: Callable[[PreloadResult], None] | None = None,
) -> None:
    """Take the preload lock, diff under it (``on_diff`` then sees ``result``), check the
    memory headroom, write the diff (atomic or stepped, as ``online`` says) and verify it;
    fills ``result``."""
    previous = result.previous_version
    token.check("nothing written")
    lease = await lockowner.take(r, PRELOAD_LOCK, operator=operator, reason="preload")
    if lease is None:
        raise await lockowner.busy(r, PRELOAD_LOCK, "preload")
    committed = False
    try:
        async with lease:
            # diff under the lock, so a concurrent run cannot make it stale
            to_write, to_remove = await plan(r, encoded, result, force=force)
            if on_diff is not None:
                on_diff(result)
            token.check("nothing written (stopped after the diff)")
            needed = await estimate(r, data, result, to_write, probe=True)
            if online:  # nothing is queued: each step is applied as it arrives
                needed = MemoryEstimate(needed.data_bytes, 0, needed.method)
            result.estimated_bytes = needed.data_bytes
            before = await memory_state(r)
            if is_cluster(r):
                # each primary takes its slots' share (spread evenly by CRC16; 20% margin)
                states = await each_primary(r, memory_state)
                share = MemoryEstimate(needed.data_bytes * 12 // (10 * len(states)), 0, "")
                for state in states:
                    checks.check_headroom(state, share)
            else:
                checks.check_headroom(before, needed)
            token.check("nothing written (stopped before the transaction)")
            version_fields = {
                "content_hash": result.version,
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
                commands = transaction(
                    to_write,
                    to_remove,
                    version_fields,
                    location_ids=sorted(data.locations),
                    batch=batch,
                )
                replies = await swap(
                    r, commands, batch, progress, token, lease, result.version, previous
                )
                checks.refused_by_server(replies)
            committed = True
            result.keys_written = len(to_write)
            result.keys_removed = len(to_remove)
            if result.online is None:
                written = {"version": result.version, "keys_written": len(to_write)}
                result.verified = await checks.verify(r, encoded, result.version, before, written)
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
        if not is_cluster(r):
            raise
    scratch = PreloadResult(result.version, None, dry_run=False, skipped=False)
    to_write, to_remove = await plan(r, encoded, scratch, force=False)
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


async def estimate(
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


async def plan(
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
