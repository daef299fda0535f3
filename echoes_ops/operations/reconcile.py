"""Find and repair presence drift (docs/design.md, decision 5).

Drift happens when a worker dies, a fire-and-forget cleanup is lost, or a move is split
between SREM and SADD. Each kind of drift is found with bounded reads (SCAN, SSCAN,
pipelined HMGET/TTL) and, with ``fix``, repaired by a Lua script that re-checks the
condition inside Redis, so a game write that lands between detection and repair is never
undone (a player who reconnected elsewhere keeps their session). Repairs are idempotent: a
second run finds nothing to do. Dry run by default.

Kinds (the keys of the report, stable for ``--json``):

- ``orphan_member``: a player in a location set with no session.
- ``location_mismatch``: a player in a set other than the location its session names.
- ``multi_location``: a player in more than one set (repaired as mismatches).
- ``missing_member``: a session held by a worker whose location set does not hold the
  player (cache-only sessions without a ``worker_id``, as warmup writes, are offline).
- ``dead_worker``: a session (and connection entry) of a worker that is gone (no meta key,
  no client with its name) and whose heartbeat is older than the grace period. A session
  with an unknown heartbeat is reported but not repaired; one inside the grace period is
  reported as pending, with the time until it becomes repairable.
- ``stale_connection``: a dead worker's connection entry whose session names another worker
  or does not exist.
- ``no_ttl_session``, ``no_ttl_inventory``, ``no_ttl_lock``: keys that must expire but
  carry no TTL; repaired by giving them the contract's TTL (locks: ``LOCK_REPAIR_TTL``).
- ``unknown_location``: a location set for a location that is not in the static cache
  (reported only; checked when the static cache is loaded).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.client.budget import TARGET_S
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.scan import scan_keys
from echoes_ops.contract import keys, scripts
from echoes_ops.cycles import no_cycle_collection
from echoes_ops.operations.drift_report import (
    DEFAULT_GRACE,
    EXAMPLES,
    KINDS,
    LOCK_REPAIR_TTL,
    REPAIR_ORDER,
    KindReport,
    ReconcileArgumentError,
    ReconcileReport,
    check_kinds,
    repair_kinds,
)
from echoes_ops.operations.reconcile_apply import Call, apply_repairs
from echoes_ops.operations.reconcile_cluster import (
    CROSS_SLOT_KINDS,
    NOTE,
    census_all,
    is_cluster,
    wait_for_second_pass,
)
from echoes_ops.operations.reconcile_recheck import Seen, join_presence, recheck_presence
from echoes_ops.operations.stop import StopToken
from echoes_ops.operations.tiermap import (
    BATCH,
    CENSUS_COUNT,
    Census,
    client_names,
    hash_fields,
    members_of_sets,
    worker_liveness,
)

_recheck_presence = recheck_presence  # looked up at call time (tests replace it)

__all__ = [
    "DEFAULT_GRACE",
    "KINDS",
    "LOCK_REPAIR_TTL",
    "DriftPlan",
    "KindReport",
    "ReconcileArgumentError",
    "ReconcileReport",
    "check_kinds",
    "find_drift",
    "reconcile",
    "repair",
]


@dataclass
class _Repairs:
    """Script calls to make, per kind: (script, keys, args, target). A kind that can have
    as many findings as there are sessions (``dead_worker``) keeps only what each call is
    built from until the calls are wanted (:meth:`of`): a dry run never builds them."""

    calls: dict[str, list[Call]] = field(default_factory=lambda: defaultdict(list))
    later: dict[str, tuple[Callable[[Any], Call], list[Any]]] = field(default_factory=dict)

    def add(
        self, kind: str, script: str, key_list: list[str], args: list[str], target: str
    ) -> None:
        """``target`` names what the repair touches (a character id, a key), for the audit."""
        self.calls[kind].append((script, key_list, args, target))

    def add_later(self, kind: str, build: Callable[[Any], Call]) -> list[Any]:
        """The list to append ``kind``'s items to; ``build(item)`` makes each one's call."""
        return self.later.setdefault(kind, (build, []))[1]

    def count(self, kind: str) -> int:
        return len(self.calls.get(kind, ())) + len(self.later.get(kind, (None, ()))[1])

    def of(self, kind: str) -> list[Call]:
        """The calls of ``kind``, in the order they were found."""
        if kind in self.later:
            build, items = self.later.pop(kind)
            self.calls[kind].extend(map(build, items))
        return self.calls.get(kind, [])


@dataclass
class DriftPlan:
    """What :func:`find_drift` found and the repairs it would make."""

    report: ReconcileReport
    repairs: _Repairs
    detected_at: float = field(default_factory=time.monotonic)

    def planned(self, kinds: list[str] | None = None) -> dict[str, int]:
        """Repairs that ``repair(kinds=kinds)`` would attempt, per kind (nonzero only)."""
        chosen = repair_kinds(kinds)
        counts = {kind: self.repairs.count(kind) for kind in REPAIR_ORDER if kind in chosen}
        return {kind: n for kind, n in counts.items() if n}


async def find_drift(
    r: AnyRedis,
    *,
    grace: float = DEFAULT_GRACE,
    now: float | None = None,
    step: int = CENSUS_COUNT,
    target: float = TARGET_S,
) -> DriftPlan:
    """Detect every kind of drift (read-only). ``step``: keys of the first census step;
    ``target``: the server time each step aims at (smaller: shorter server commands, more
    round trips)."""
    with no_cycle_collection():  # the census's records hold no cycles (cycles.py)
        return await _find_drift(r, grace=grace, now=now, step=step, target=target)


async def _find_drift(
    r: AnyRedis, *, grace: float, now: float | None, step: int, target: float
) -> DriftPlan:
    started = time.perf_counter()
    now = time.time() if now is None else now
    report = ReconcileReport(
        dry_run=True, grace_seconds=grace, scanned={}, kinds={k: KindReport() for k in KINDS}
    )
    repairs = _Repairs()

    # one pass over the keyspace (every primary)
    tier = await census_all(r, count=step, target=target)
    report.scanned["keys"] = tier.scanned
    sessions = tier.sessions
    report.scanned["sessions"] = len(sessions)

    sets = sorted((loc, key) for loc, (key, _) in tier.presence.items())
    nonempty = [(key, tier.presence[loc][1]) for loc, key in sets if tier.presence[loc][1]]
    members = await members_of_sets(r, [k for k, _ in nonempty], [n for _, n in nonempty])
    presence = join_presence(sessions, [(loc, members.get(key, [])) for loc, key in sets])
    # only the suspects can be drift (every other player is where the session says); the
    # re-read below changes what is known of these players only
    suspects, member_locations = presence.suspects, presence.member_locations
    report.scanned["location_sets"] = len(sets)
    report.scanned["presence_members"] = presence.members

    workers = await worker_liveness(r, tier.worker_metas | tier.worker_connections)
    dead = {wid for wid, live in workers.items() if not live.alive}
    # workers named only by sessions (no meta, no connections key left) are judged the same way
    named = {s.worker for s in sessions.values() if s.worker} - workers.keys()
    dead |= await _gone(r, sorted(named))
    report.scanned["workers"] = len(workers) + len(named)

    # always present, one meaning (docs/inspect.md): the players re-read at one instant
    # before the presence kinds are reported (none on a cluster)
    report.scanned["rechecked_players"] = 0
    if is_cluster(r):
        # a player's session and sets lie in different slots: no one-instant re-read; --fix
        # confirms each cross-slot finding with a second pass instead (reconcile_cluster.py)
        report.note = NOTE.format(grace=grace)
    else:
        report.scanned["rechecked_players"] = len(suspects)
        await _recheck_presence(r, sessions, member_locations, suspects)
    _presence_drift(report, repairs, sessions, member_locations, suspects)
    await _dead_workers(r, report, repairs, sessions, dead, grace, now)
    _no_ttl(report, repairs, sessions, tier)
    await _unknown_locations(r, report, sets, presence.sizes)
    report.elapsed_s = time.perf_counter() - started
    return DriftPlan(report, repairs)


async def repair(
    r: AnyRedis, plan: DriftPlan, *, kinds: list[str] | None = None, stop: StopToken | None = None
) -> ReconcileReport:
    """Apply a plan's repairs (only ``kinds`` when given); each re-checks its condition in
    Redis first. ``stop`` is checked before each repair: a stop raises :class:`Interrupted`
    saying how many ran."""
    started = time.perf_counter()
    plan.report.dry_run = False
    plan.report.selected = check_kinds(kinds)
    stop = stop or StopToken()
    chosen = repair_kinds(plan.report.selected)
    try:
        if is_cluster(r) and any(plan.repairs.count(k) for k in chosen & CROSS_SLOT_KINDS):
            await _confirm(r, plan, chosen, stop)
        await apply_repairs(r, plan.report, plan.repairs.of, chosen, stop)
    finally:
        plan.report.elapsed_s += time.perf_counter() - started
    return plan.report


async def reconcile(
    r: AnyRedis,
    *,
    fix: bool = False,
    grace: float = DEFAULT_GRACE,
    now: float | None = None,
    kinds: list[str] | None = None,
    stop: StopToken | None = None,
) -> ReconcileReport:
    """Find drift and, with ``fix``, repair it (only ``kinds`` when given)."""
    plan = await find_drift(r, grace=grace, now=now)
    plan.report.selected = check_kinds(kinds)
    if fix and stop is not None:
        stop.check(f"nothing repaired (stopped after finding {plan.report.drift:,} finding(s))")
    return await repair(r, plan, kinds=kinds, stop=stop) if fix else plan.report


async def _confirm(r: AnyRedis, plan: DriftPlan, chosen: set[str], stop: StopToken) -> None:
    """On a cluster: a second pass ``--grace`` after the first; a cross-slot repair goes
    ahead only when the second pass finds the same thing (with what it read then)."""
    await wait_for_second_pass(plan.detected_at, plan.report.grace_seconds, stop)
    second = await find_drift(r, grace=plan.report.grace_seconds)
    for kind in chosen & CROSS_SLOT_KINDS:
        again = {call[3]: call for call in second.repairs.of(kind)}
        first = plan.repairs.of(kind)
        kept = [again[call[3]] for call in first if call[3] in again]
        plan.report.unconfirmed += len(first) - len(kept)
        plan.repairs.calls[kind] = kept


async def _gone(r: AnyRedis, worker_ids: list[str]) -> set[str]:
    """Which of ``worker_ids`` have no connected client (or, when CLIENT LIST is not
    allowed, no meta key)."""
    if not worker_ids:
        return set()
    names = await client_names(r)
    if names is not None:
        return {wid for wid in worker_ids if wid not in names}
    metas = await bulk(r, [("EXISTS", keys.worker_meta_key(w)) for w in worker_ids])
    return {wid for wid, exists in zip(worker_ids, metas, strict=True) if not exists}


def _presence_drift(
    report: ReconcileReport,
    repairs: _Repairs,
    sessions: dict[int, Seen],
    member_locations: dict[int, list[str]],
    suspects: list[int],
) -> None:
    """The presence kinds among ``suspects`` (sorted ids: every player whose session and
    sets may disagree)."""
    for cid in suspects:
        locations = member_locations.get(cid)
        session = sessions.get(cid)
        if not locations or (
            session is not None and len(locations) == 1 and locations[0] == session.location
        ):
            continue
        if len(locations) > 1:
            report.kinds["multi_location"].add({"id": cid, "locations": sorted(locations)})
        if session is None:
            for loc in locations:
                report.kinds["orphan_member"].add({"id": cid, "location": loc})
                repairs.add(
                    "orphan_member",
                    scripts.REMOVE_ORPHAN_MEMBER,
                    [keys.presence_key(loc), keys.session_key(cid)],
                    [str(cid)],
                    f"{cid}@{loc}",
                )
            continue
        for loc in locations:
            if loc != session.location:
                report.kinds["location_mismatch"].add(
                    {"id": cid, "location": loc, "session_location": session.location}
                )
                repairs.add(
                    "location_mismatch",
                    scripts.REMOVE_MISPLACED_MEMBER,
                    [keys.presence_key(loc), keys.session_key(cid)],
                    [str(cid), loc],
                    f"{cid}@{loc}",
                )
    # only a session held by a worker puts the player in a location; a cache-only session
    # (warmup writes those, with no worker_id) is an offline player
    for cid in suspects:
        session = sessions.get(cid)
        if (
            session is None
            or session.worker is None
            or not session.location
            or session.location in member_locations.get(cid, ())
        ):
            continue
        try:
            key = keys.presence_key(session.location)
        except ValueError:
            continue  # a location id no key can be built from: nothing safe to add
        report.kinds["missing_member"].add({"id": cid, "session_location": session.location})
        repairs.add(
            "missing_member",
            scripts.ADD_MISSING_MEMBER,
            [key, keys.session_key(cid)],
            [str(cid), session.location],
            f"{cid}@{session.location}",
        )


async def _dead_workers(
    r: AnyRedis,
    report: ReconcileReport,
    repairs: _Repairs,
    sessions: dict[int, Seen],
    dead: set[str],
    grace: float,
    now: float,
) -> None:
    kind = report.kinds["dead_worker"]
    # every session of a dead worker, in id order; at 100,000s of them (a worker that died
    # with its players) the passes below are comprehensions, the examples a short loop
    held = sorted((cid, s) for cid, s in sessions.items() if s.worker in dead)
    for cid, session in held:  # the first EXAMPLES findings, as add() would keep them
        if len(kind.examples) >= EXAMPLES:
            break
        example: dict[str, Any] = {"id": cid, "worker_id": session.worker}
        if session.heartbeat is None:
            example["heartbeat_age"] = None
            kind.examples.append({**example, "repairable": False, "why": "heartbeat unknown"})
        elif (age := now - session.heartbeat) > grace:
            kind.examples.append({**example, "heartbeat_age": round(age, 1)})
    unknown = sum(1 for _, s in held if s.heartbeat is None)
    ages = [(now - s.heartbeat, cid, s.worker) for cid, s in held if s.heartbeat is not None]
    due = [(cid, worker) for age, cid, worker in ages if age > grace]
    waiting = [age for age, _, _ in ages if age <= grace]  # the worker may be restarting
    kind.found += unknown + len(due)
    kind.not_repairable += unknown  # a heartbeat unknown: reported, never repaired
    kind.pending += len(waiting)
    if waiting:
        kind.pending_ready_in = grace - min(waiting)
    repairs.add_later("dead_worker", _release_call).extend(due)
    for wid in sorted(dead):
        connections = await hash_fields(r, keys.worker_connections_key(wid))
        for raw in connections:
            field_name = str(raw)
            owner_id = int(field_name) if field_name.isdigit() and int(field_name) > 0 else None
            owned = sessions.get(owner_id) if owner_id is not None else None
            if owned is not None and owned.worker == wid:
                continue  # handled above (or within grace)
            report.kinds["stale_connection"].add({"id": field_name, "worker_id": wid})
            connections_key = keys.worker_connections_key(wid)
            # for a field that is no character id, the hash itself stands in for the session:
            # it has no worker_id field, so the entry is removed
            session_key = keys.session_key(owner_id) if owner_id else connections_key
            repairs.add(
                "stale_connection",
                scripts.REMOVE_STALE_CONNECTION,
                [connections_key, session_key],
                [field_name, wid],
                f"{wid}:{field_name}",
            )


def _release_call(item: tuple[int, str]) -> Call:
    """The repair of a dead worker's session (``(character id, worker id)``)."""
    cid, worker = item
    return (
        scripts.RELEASE_PLAYER_OF_WORKER,
        [keys.session_key(cid), keys.worker_connections_key(worker)],
        [str(cid), worker, keys.PRESENCE_PREFIX, keys.PRESENCE_SUFFIX],
        str(cid),
    )


def _no_ttl(
    report: ReconcileReport, repairs: _Repairs, sessions: dict[int, Seen], tier: Census
) -> None:
    for cid in sorted(cid for cid, session in sessions.items() if session.ttl == -1):
        report.kinds["no_ttl_session"].add({"id": cid})
        repairs.add(
            "no_ttl_session",
            scripts.EXPIRE_IF_PERSISTENT,
            [keys.session_key(cid)],
            [str(keys.SESSION_TTL)],
            str(cid),
        )
    for found_ttls, kind, ttl in (
        (tier.inventories, "no_ttl_inventory", keys.INVENTORY_TTL),
        (tier.locks, "no_ttl_lock", LOCK_REPAIR_TTL),
    ):
        for key, key_ttl in sorted(found_ttls.items()):
            if key_ttl == -1:
                report.kinds[kind].add({"key": key})
                repairs.add(kind, scripts.EXPIRE_IF_PERSISTENT, [key], [str(ttl)], key)


async def _unknown_locations(
    r: AnyRedis,
    report: ReconcileReport,
    sets: list[tuple[str, str]],
    sizes: dict[str, int],
) -> None:
    if not sets:
        return
    cached = await bulk(
        r, [("EXISTS", keys.location_cache_key(loc)) for loc, _ in sets], raise_on_error=False
    )
    loaded = any(cached) or bool(await r.exists(keys.GAMEDATA_VERSION_KEY, keys.LOCATION_INDEX_KEY))
    if not loaded:
        async for _batch in scan_keys(r, keys.LOCATION_CACHE_PATTERN, count=BATCH):
            loaded = True
            break
    if not loaded:
        return  # no static cache loaded: nothing to judge locations by
    for (loc, _), present in zip(sets, cached, strict=True):
        if not present:
            kind = report.kinds["unknown_location"]
            kind.add({"location": loc, "members": sizes.get(loc, 0)})
            kind.not_repairable += 1
