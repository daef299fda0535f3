"""Pub/sub mode agreement: the configured ``REDIS_PUBSUB_MODE`` against the mode each live
worker advertises in its meta (contract/pubsub.py)."""

from __future__ import annotations

from echoes_ops.contract.pubsub import worker_mode
from echoes_ops.operations.doctor.base import Context, Finding, found

WHY = (
    "A classic PUBLISH never reaches a shard subscriber (SSUBSCRIBE) and an SPUBLISH never "
    "reaches a classic one, although the channel names are the same: workers in different "
    "pub/sub modes, or operators' broadcasts and tail in another mode than the workers, "
    "silently miss each other's location and player messages."
)
FIX = (
    "set REDIS_PUBSUB_MODE to one value for the workers and for echoes-ops (classic is the "
    "plan's; sharded keeps location and player traffic on one cluster node) and restart the "
    "workers that differ"
)


async def pubsub_mode(ctx: Context) -> Finding:
    configured = ctx.pubsub_mode
    modes: dict[str, str] = {}
    for worker_id, live in sorted(ctx.liveness.items()):
        if not live.alive or not live.meta:
            continue
        mode = worker_mode(live.meta)
        modes[worker_id] = mode if mode is not None else f"unknown ({live.meta.get('pubsub_mode')})"
    details = {"configured": configured, "workers": modes}
    if not modes:
        return found("ok", f"configured {configured}; no live worker to compare", WHY, **details)
    differ = {w: m for w, m in modes.items() if m != configured}
    if not differ:
        return found("ok", f"all {len(modes)} live worker(s) {configured}", WHY, **details)
    shown = ", ".join(f"{w} {m}" for w, m in list(differ.items())[:5])
    more = " ..." if len(differ) > 5 else ""
    return found(
        "warn",
        f"{len(differ)} of {len(modes)} live worker(s) not in the configured mode "
        f"{configured}: {shown}{more}",
        WHY,
        FIX,
        **details,
    )
