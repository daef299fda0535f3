"""Whether a lock's owner is alive, and which workers still believe they hold a lock.

A worker owner is alive while a client with its name is connected AND its heartbeat in
``worker:<id>:meta`` is fresh (at most ``STALE_BEATS`` intervals old): a frozen process
(SIGSTOP, a stuck event loop) keeps its TCP connection but stops beating. A lock taken by
a command's process (``lockowner``) names host and pid: on this host, whether that pid
runs decides. Workers list the locks they hold in their meta (``locks``, JSON name ->
value); a claim whose value is no longer the lock's is a former holder that has not
noticed it lost the lock.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import keys
from echoes_ops.errors import OpsError
from echoes_ops.operations.tiermap import client_names
from echoes_ops.primitives import lock
from echoes_ops.primitives.procs import process_alive

BATCH = 1000
STALE_BEATS = 3  # a heartbeat older than this many intervals: the worker is unresponsive


def _heartbeat_age(meta: list[Any], now: float) -> tuple[float | None, float]:
    """(seconds since the meta's heartbeat or None, how old it may get while alive)."""
    beat, interval = [*meta, None, None][:2] if isinstance(meta, list) else (None, None)
    try:
        every = float(interval) if interval else float(keys.WORKER_HEARTBEAT_INTERVAL)
    except ValueError:
        every = float(keys.WORKER_HEARTBEAT_INTERVAL)
    try:
        age = max(0.0, now - float(beat)) if beat else None
    except ValueError:
        age = None
    return age, STALE_BEATS * every


async def liveness(r: AnyRedis, owners: set[str]) -> dict[str, tuple[bool | None, str]]:
    """For each owner: (alive, how it was decided). A worker is alive while a client with
    its name is connected (CLIENT LIST) AND its ``worker:<id>:meta`` heartbeat is fresh: a
    frozen process (SIGSTOP, a long GC pause) keeps its connection but stops beating, and
    is "unresponsive". Without CLIENT LIST (ACL), the heartbeat alone decides."""
    workers = sorted(o for o in owners if lock.operator_of(o) is None)
    out: dict[str, tuple[bool | None, str]] = {
        o: (None, "operator hold (counts as live)") for o in owners if o not in workers
    }
    if not workers:
        return out
    names = await client_names(r)
    commands: list[tuple[Any, ...]] = []
    valid = []
    for wid in workers:
        try:
            meta_key = keys.worker_meta_key(wid)
            commands.append(("EXISTS", meta_key))
            commands.append(("HMGET", meta_key, "heartbeat", "heartbeat_interval"))
            valid.append(wid)
        except OpsError:
            out[wid] = (False, f"owner {wid!r} is not a valid worker id")
    replies = await bulk(r, commands, raise_on_error=False)
    now = time.time()
    for index, wid in enumerate(valid):
        has_meta = replies[2 * index] == 1
        meta = replies[2 * index + 1] if isinstance(replies[2 * index + 1], list) else []
        age, limit = _heartbeat_age(meta, now)
        beat = (
            "no heartbeat (no worker:meta key)"
            if not has_meta
            else ("heartbeat of unknown age" if age is None else f"heartbeat {age:.0f} s old")
        )
        fresh = has_meta and (age is None or age <= limit)
        if names is None:
            out[wid] = (
                (True, f"{beat} (CLIENT LIST not permitted)")
                if fresh
                else (False, f"{beat} (CLIENT LIST not permitted)")
            )
        elif wid in names:
            out[wid] = (
                (True, f"a client named {wid} is connected, {beat}")
                if fresh
                else (False, f"unresponsive: connected, {beat}")
            )
        elif has_meta:
            out[wid] = (False, f"no client named {wid} is connected ({beat})")
        else:
            out[wid] = (
                False,
                f"no client named {wid} is connected and it has no worker:meta key (the "
                "plan's own workers set neither, so a live one of theirs cannot be seen)",
            )
    return out


async def claims_of_workers(r: AnyRedis) -> dict[str, list[tuple[str, str]]]:
    """What workers' own meta says they hold: lock name -> [(worker id, token)]. A worker
    records the locks it holds in its meta's ``locks`` field (JSON name -> value)."""
    metas: list[str] = []
    async for batch in scan_keys(r, keys.WORKER_META_PATTERN, count=BATCH):
        metas.extend(batch)
    replies = await bulk(r, [("HGET", meta, "locks") for meta in metas], raise_on_error=False)
    out: dict[str, list[tuple[str, str]]] = {}
    for meta, raw in zip(metas, replies, strict=True):
        wid = keys.parse_worker_meta_key(meta)
        if wid is None or not isinstance(raw, str) or not raw:
            continue
        try:
            held = json.loads(raw)
        except ValueError:
            continue
        if isinstance(held, dict):
            for name, token in held.items():
                out.setdefault(str(name), []).append((wid, str(token)))
    return out


def process_liveness(hold: dict[str, str]) -> tuple[bool | None, str] | None:
    """For a lock taken by a command's process (its info names host and pid): whether that
    process still runs; ``None`` when the info names no process."""
    host, pid = hold.get("host"), hold.get("pid", "")
    if not host or not pid.isdigit():
        return None
    if host != socket.gethostname():
        return None, f"held by process {pid} on {host} (another host: not checked)"
    if process_alive(int(pid)):
        return True, f"its process {pid} on {host} runs"
    return False, f"its process {pid} on {host} is gone"
