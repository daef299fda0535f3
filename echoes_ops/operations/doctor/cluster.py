"""Redis Cluster: state, slot coverage, nodes down, primaries without a replica, epochs,
and the two settings that decide what a failure does (operations/cluster_health.py)."""

from __future__ import annotations

from echoes_ops.operations.cluster_health import cluster_health
from echoes_ops.operations.doctor.base import Context, Finding, found

WHY = (
    "On a cluster each primary serves a share of the slots: a primary down without a "
    "replica to take over, or slots without an answering primary, fail every command on "
    "their keys (and, with cluster-require-full-coverage yes, every command on the cluster)."
)
FIX = (
    "bring the node back or fail over (CLUSTER FAILOVER on its replica); give every primary "
    "a replica (redis-cli --cluster add-node --cluster-slave); see docs/runbook.md"
)
_FAILING = ("cluster_state", "slots have no answering primary", "is down")


async def cluster(ctx: Context) -> Finding:
    health = await cluster_health(ctx.r)
    if health is None:
        return found("ok", "one server, not a cluster: nothing to check", WHY)
    details = health.as_dict()
    settings = (
        f"cluster-require-full-coverage {health.require_full_coverage or '?'}, "
        f"cluster-node-timeout {health.node_timeout_ms if health.node_timeout_ms is not None else '?'} ms"
    )
    if not health.problems:
        return found(
            "ok", f"{health.label}, state ok, all 16384 slots served; {settings}", WHY, **details
        )
    failing = any(any(word in p for word in _FAILING) for p in health.problems)
    return found(
        "fail" if failing else "warn",
        f"{health.label}: " + "; ".join(health.problems) + f" ({settings})",
        WHY,
        FIX,
        **details,
    )
