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

Where each part is: this module runs step 1 and, for a world the gamedata cache has seen
preloaded, the check that needs no reading at all (``preload_memo``); steps 2-5 are in
``preload_write`` (imported only when there is something to diff or write), the transaction
in ``preload_atomic``, the stepped writer in ``preload_online``, sending on either topology
in ``preload_send``. An unchanged world's preload, the common case, thus imports none of the
writers (#17: its whole time is start-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from echoes_ops.client.connect import AnyRedis
from echoes_ops.gamedata.loader import World
from echoes_ops.operations import preload_memo as memo_notes
from echoes_ops.operations import preload_send
from echoes_ops.operations.preload_send import is_cluster
from echoes_ops.operations.static_data import KindDiff, read_version
from echoes_ops.operations.static_encoding import content_digest, encode_gamedata
from echoes_ops.operations.stop import StopToken

if TYPE_CHECKING:
    from echoes_ops.gamedata.models import GameData
    from echoes_ops.operations.preload_online import OnlineReport

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
    diff: bool = True,
    on_diff: Callable[[PreloadResult], None] | None = None,
) -> PreloadResult:
    """Make the static caches equal ``data``; see the module docstring for the steps.

    Given a :class:`World` from the gamedata cache, an unchanged dataset is recognised from
    what an earlier preload of the same world noted beside it (content hash and keys),
    without reading the world itself.

    ``stop`` is checked at every step boundary; the last one before EXEC is the last
    chunk of the streamed transaction, so a stop there writes nothing, and a stop after
    it reports the committed version (both as :class:`Interrupted`).

    ``online`` (implied on Redis Cluster) writes the diff with the stepped writer instead
    of one transaction (``preload_online``); ``verify`` then re-reads what was written.

    ``diff=False`` (a dry run only) stops after the unchanged check: no keyspace walk, no
    diff. ``on_diff`` is called with the result once the run's diff under the lock is in,
    before anything is written."""
    token = stop or StopToken()
    online = online or is_cluster(r)
    started = time.perf_counter()
    world = data if isinstance(data, World) else None
    if world is not None and not force:
        memo = memo_notes.read_memo(world)
        if memo is not None:
            previous = (await read_version(r)).get("content_hash")
            if previous == memo.sha256 and await preload_send.all_present(r, memo.keys):
                return PreloadResult(
                    version=memo.sha256,
                    previous_version=previous,
                    dry_run=dry_run,
                    skipped=True,
                    counts=dict(world.counts),
                    elapsed_s=time.perf_counter() - started,
                )
    if isinstance(data, World):
        encoded, digest = memo_notes.noted(data)  # encoded once, noted for the next run
        data = data.data()
    else:
        encoded = encode_gamedata(data)
        digest = content_digest(encoded)
    static_keys = [key for mappings in encoded.values() for key in mappings]
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
    if previous == digest.sha256 and not force and await preload_send.all_present(r, static_keys):
        result.skipped = True
        result.elapsed_s = time.perf_counter() - started
        return result

    # what an unchanged world's preload never needs (#17: its time is start-up)
    from echoes_ops.operations import preload_write

    if dry_run and not diff:
        result.elapsed_s = time.perf_counter() - started
        return result
    if dry_run:
        to_write, _ = await preload_write.plan(r, encoded, result, force=force)
        estimate = await preload_write.estimate(r, data, result, to_write, probe=False)
        result.estimated_bytes = estimate.data_bytes
        result.elapsed_s = time.perf_counter() - started
        return result
    await preload_write.write(
        r,
        data,
        encoded,
        result,
        operator=operator,
        token=token,
        force=force,
        online=online,
        verify=verify,
        progress=progress,
        batch=batch,
        on_diff=on_diff,
    )
    result.elapsed_s = time.perf_counter() - started
    token.check(
        f"committed version {result.version[:12]} ({result.keys_written:,} keys written, "
        f"{result.keys_removed:,} removed, verified)",
        {"version": result.version, "committed": True, "keys_written": result.keys_written},
    )
    return result
