"""Checks of what the tier holds: static data against gamedata, keys that must expire,
workers that died with leftovers."""

from __future__ import annotations

from typing import Any, Final

from echoes_ops.contract import keys
from echoes_ops.operations.cache import cache_status
from echoes_ops.operations.doctor.base import Context, Finding, found
from echoes_ops.operations.preload_online import advice
from echoes_ops.operations.preload_send import is_cluster
from echoes_ops.operations.reconcile import LOCK_REPAIR_TTL
from echoes_ops.operations.workers import list_workers

STATIC_FAMILIES: Final = ("location_cache", "item_defs", "npc_defs")


async def static_data(ctx: Context) -> Finding:
    data, problem = ctx.gamedata, ctx.gamedata_problem
    why = (
        "Workers read locations, items and NPC definitions from the static caches; missing "
        "or malformed entries break lookups, stale ones serve old data."
    )
    loaded = {name: ctx.walk.families[name].keys for name in STATIC_FAMILIES}
    if sum(loaded.values()) == 0:
        return found(
            "fail",
            "no static data loaded (no location, item or NPC keys)",
            why,
            advice(0, first_load=True, cluster=is_cluster(ctx.r)),
            loaded=loaded,
        )
    if data is None:
        return found(
            "unknown",
            f"static data present ({sum(loaded.values())} keys) but not compared: "
            f"{problem or 'no gamedata'}",
            why,
            "pass --gamedata DIR (the gamedata the game runs with)",
            loaded=loaded,
        )
    status = await cache_status(ctx.r, data)
    kinds = {name: k.as_dict() for name, k in status.kinds.items()}
    missing = sum(k["missing"] for k in kinds.values())
    malformed = sum(k["malformed"] for k in kinds.values())
    stale = sum(k["stale"] for k in kinds.values())
    extra = sum(k["extra"] for k in kinds.values())
    details = {
        "gamedata_version": status.gamedata_version,
        "loaded_version": status.loaded_version,
        "missing": missing,
        "malformed": malformed,
        "stale": stale,
        "extra": extra,
    }
    counts = f"{missing} missing, {malformed} malformed, {stale} stale, {extra} extra"
    # rewrites only what differs; atomic while that fits the budget, else --online
    fix = advice(missing + malformed + stale + extra, cluster=is_cluster(ctx.r))
    if missing or malformed:
        return found("fail", f"static caches incomplete: {counts}", why, fix, **details)
    if not status.in_sync:
        version = "" if status.loaded_version == status.gamedata_version else "; version differs"
        return found(
            "warn",
            f"static caches differ from gamedata: {counts}{version}",
            why,
            fix,
            **details,
        )
    return found(
        "ok",
        f"loaded and matching gamedata {status.gamedata_version[:12]}",
        why,
        **details,
    )


async def keys_without_ttl(ctx: Context) -> Finding:
    why = (
        "Sessions, inventories and locks must expire. A session without a TTL keeps a player "
        "online forever; an inventory without one serves stale items; a lock without one is "
        "never released if its holder dies, so the task it guards stops for good."
    )
    fix = (
        "echoes-ops reconcile --fix (gives each the contract's TTL: sessions "
        f"{keys.SESSION_TTL} s, inventories {keys.INVENTORY_TTL} s, locks {LOCK_REPAIR_TTL} s)"
    )
    no_ttl = {name: ctx.walk.families[name].no_ttl for name in ("sessions", "inventories", "locks")}
    examples = {
        name: ctx.walk.families[name].no_ttl_examples
        for name in no_ttl
        if ctx.walk.families[name].no_ttl_examples
    }
    summary = (
        f"{no_ttl['sessions']} session(s), {no_ttl['inventories']} inventory(ies), "
        f"{no_ttl['locks']} lock(s) without a TTL"
    )
    details = {"without_ttl": no_ttl, "examples": examples}
    if ctx.walk.ttl_errors:
        return found(
            "unknown",
            f"{summary}, but {ctx.walk.ttl_errors} TTL read(s) were refused: {ctx.walk.ttl_error}",
            why,
            "allow TTL for the user echoes-ops connects as, or check by hand",
            **details,
        )
    if no_ttl["locks"]:
        return found("fail", summary, why, fix, **details)
    if no_ttl["sessions"] or no_ttl["inventories"]:
        return found("warn", summary, why, fix, **details)
    return found("ok", summary, why, **details)


async def dead_workers(ctx: Context) -> Finding:
    why = (
        "A worker that died without cleaning up leaves its players' sessions, presence "
        "entries and connections hash behind: ghost players stay visible in locations and "
        "count as online."
    )
    workers = await list_workers(ctx.r)
    dead = [w for w in workers if not w.alive and (w.connections or w.players)]
    details: dict[str, Any] = {
        "workers": len(workers),
        "alive": sum(1 for w in workers if w.alive),
        "dead_with_leftovers": [
            {
                "id": w.worker_id,
                "connections": w.connections,
                "players": w.players,
                "heartbeat_age": None if w.heartbeat_age is None else round(w.heartbeat_age, 1),
            }
            for w in dead
        ],
    }
    if any(not live.clients_visible for live in ctx.liveness.values()):
        details["note"] = "CLIENT LIST not allowed: liveness judged by meta keys only"
    if dead:
        ids = ", ".join(w.worker_id for w in dead[:5]) + (" ..." if len(dead) > 5 else "")
        return found(
            "warn",
            f"{len(dead)} dead worker(s) with leftovers: {ids}",
            why,
            "echoes-ops workers cleanup <id> (after checking it is really gone), or "
            "echoes-ops reconcile --fix",
            **details,
        )
    return found(
        "ok",
        f"{details['alive']} live worker(s), none dead with leftovers",
        why,
        **details,
    )
