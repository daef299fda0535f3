"""Whether a lock's owner is alive, and which workers still believe they hold a lock.

A worker owner is alive while a client with its name is connected AND its heartbeat in
``worker:<id>:meta`` is fresh (``tiermap.WorkerLiveness.state``, the one rule every command
uses): a frozen process (SIGSTOP, a stuck event loop) keeps its TCP connection but stops
beating. A lock taken by
a command's process (``lockowner``) names host and pid: on this host, whether that pid
runs decides. Workers list the locks they hold in their meta (``locks``, JSON name ->
value); a claim whose value is no longer the lock's is a former holder that has not
noticed it lost the lock.
"""

from __future__ import annotations

import json
import socket

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import keys
from echoes_ops.errors import OpsError
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness
from echoes_ops.primitives import lock
from echoes_ops.primitives.procs import process_alive

BATCH = 1000


async def liveness(r: AnyRedis, owners: set[str]) -> dict[str, tuple[bool | None, str]]:
    """For each owner: (alive, how it was decided). A worker owner counts as alive only in
    :attr:`~echoes_ops.operations.tiermap.WorkerLiveness.state` ``alive`` (the rule
    ``workers``, ``status`` and the dashboard show): a frozen process keeps its connection
    but stops beating, and is "unresponsive". Without CLIENT LIST (ACL), the heartbeat
    alone decides."""
    workers = sorted(o for o in owners if lock.operator_of(o) is None)
    out: dict[str, tuple[bool | None, str]] = {
        o: (None, "operator hold (counts as live)") for o in owners if o not in workers
    }
    valid = set()
    for wid in workers:
        try:
            keys.worker_meta_key(wid)
            valid.add(wid)
        except OpsError:
            out[wid] = (False, f"owner {wid!r} is not a valid worker id")
    if not valid:
        return out
    for wid, live in (await worker_liveness(r, valid)).items():
        out[wid] = _decided(live)
    return out


def _decided(live: WorkerLiveness) -> tuple[bool, str]:
    wid = live.worker_id
    age = live.heartbeat_age
    beat = (
        "no heartbeat (no worker:meta key)"
        if not live.meta
        else ("heartbeat of unknown age" if age is None else f"heartbeat {age:.0f} s old")
    )
    if not live.clients_visible:
        return live.state == "alive", f"{beat} (CLIENT LIST not permitted)"
    if live.client_connected:
        if live.state == "alive":
            return True, f"a client named {wid} is connected, {beat}"
        return False, f"unresponsive: connected, {beat}"
    if live.meta:
        return False, f"no client named {wid} is connected ({beat})"
    return (
        False,
        f"no client named {wid} is connected and it has no worker:meta key (the plan's own "
        "workers set neither, so a live one of theirs cannot be seen)",
    )


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
