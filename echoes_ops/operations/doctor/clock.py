"""Clock skew between the workers' heartbeats and the Redis server's clock."""

from __future__ import annotations

import statistics
from typing import Any, Final

from echoes_ops.client.bulk import bulk
from echoes_ops.contract import codec, keys
from echoes_ops.operations.doctor.base import Context, Finding, found

SKEW_WARN: Final = 5.0  # seconds
SKEW_FAIL: Final = 30.0  # half of reconcile's default grace: live players could look dead
SKEW_SESSION_SAMPLE: Final = 200  # sessions whose TTL the keyspace walk samples


async def clock_skew(ctx: Context) -> Finding:
    why = (
        "Heartbeats are wall-clock epoch seconds written by each worker, read against other "
        "clocks: a worker whose clock is behind makes its live players look idle, so "
        "`reconcile --fix` and `workers cleanup` (60 s grace) could remove them; one ahead "
        "hides players that are really gone."
    )
    fix = "run NTP (chrony, systemd-timesyncd) on the worker hosts and the Redis host"
    now = ctx.server_time
    live = {wid: w for wid, w in ctx.liveness.items() if w.alive}
    if not live:
        return found("ok", "no live workers to compare", why, workers={})
    offsets: dict[str, list[float]] = {wid: [] for wid in live}
    lower_bounds: dict[str, list[float]] = {wid: [] for wid in live}
    ordered = sorted(live)
    pttls = await bulk(
        ctx.r, [("PTTL", keys.worker_meta_key(wid)) for wid in ordered], raise_on_error=False
    )
    for wid, pttl in zip(ordered, pttls, strict=True):
        beat = codec.decode_epoch(live[wid].meta.get("heartbeat"), now=now)
        if beat is None or not isinstance(pttl, int) or pttl <= 0:
            continue
        if pttl <= keys.WORKER_META_TTL * 1000:
            # heartbeat and EXPIRE (the contract's 15 s) are written together, so the
            # remaining TTL says when, by the server's clock, the heartbeat was written
            written = now - (keys.WORKER_META_TTL - pttl / 1000)
            offsets[wid].append(beat - written)
        elif beat > now:
            lower_bounds[wid].append(beat - now)
    sample = ctx.walk.families["sessions"].ttl_sample
    commands: list[tuple[Any, ...]] = []
    for key in sample:
        commands += [("HMGET", key, "worker_id", "last_heartbeat"), ("PTTL", key)]
    replies = await bulk(ctx.r, commands, raise_on_error=False)
    for index in range(len(sample)):
        values, pttl = replies[2 * index], replies[2 * index + 1]
        if not isinstance(values, list) or not isinstance(pttl, int) or pttl <= 0:
            continue
        owner = None if values[0] is None else str(values[0])
        beat = codec.decode_epoch(None if values[1] is None else str(values[1]), now=now)
        if owner not in live or beat is None or pttl > keys.SESSION_TTL * 1000:
            continue
        # other writes may refresh the TTL without a heartbeat: this only bounds how far
        # ahead the worker's clock is, never how far behind
        lower_bounds[owner].append(beat - (now - (keys.SESSION_TTL - pttl / 1000)))
    per_worker: dict[str, dict[str, Any]] = {}
    for wid in ordered:
        if offsets[wid]:
            skew: float | None = statistics.median(offsets[wid])
            source = "meta"
        elif lower_bounds[wid] and max(lower_bounds[wid]) > 0:
            skew, source = max(lower_bounds[wid]), "sessions (at least)"
        else:
            skew, source = None, "unknown"
        if skew is not None and lower_bounds[wid] and max(lower_bounds[wid]) > skew:
            skew, source = max(lower_bounds[wid]), "sessions (at least)"
        per_worker[wid] = {
            "offset_s": None if skew is None else round(skew, 3),
            "source": source,
            "sessions_sampled": len(lower_bounds[wid]),
        }
    known = {wid: v["offset_s"] for wid, v in per_worker.items() if v["offset_s"] is not None}
    if not known:
        return found(
            "unknown",
            f"{len(live)} live worker(s), none with a heartbeat that can be compared",
            why,
            workers=per_worker,
        )
    worst_id = max(known, key=lambda w: abs(known[w]))
    worst = known[worst_id]
    direction = "ahead of" if worst > 0 else "behind"
    summary = f"worst: {worst_id} is {abs(worst):.1f} s {direction} the Redis server's clock"
    verdict = "fail" if abs(worst) > SKEW_FAIL else "warn" if abs(worst) > SKEW_WARN else "ok"
    if verdict == "ok":
        summary = f"{len(known)} worker(s) within {SKEW_WARN:.0f} s of the server ({summary})"
    return found(
        verdict,
        summary,
        why,
        fix if verdict != "ok" else "",
        server_time=round(now, 3),
        workers=per_worker,
    )
