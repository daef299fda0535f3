"""Reading the tier's live state in bounded steps: SCAN with COUNT for keys, pipelined
(C-packed) batches for values. Shared by the session, location, worker and reconcile views.

No call here issues KEYS, SMEMBERS or HGETALL on a key of unbounded size: presence sets are
read with SSCAN, and every batch is at most ``BATCH`` commands.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.budget import StepBudget, lua_walk, node_walk
from echoes_ops.client.bulk import bulk, pairs
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_node, primary_clients, primary_nodes, replica_nodes
from echoes_ops.client.scan import scan_keys
from echoes_ops.client.walk import keys_in_slots, walk_primaries
from echoes_ops.contract import codec, keys, scripts
from echoes_ops.contract.session import SESSION_FIELDS, Session

BATCH = 1000
STEP_COUNT = 400  # keys per server-side (Lua) SCAN step: ~0.7-0.9 ms p99 on a mixed keyspace,
# ~1.4 ms median when nearly every key is a session (100k sessions; docs/benchmarks/dashboard.md)
SSCAN_COUNT = 1000


@dataclass(frozen=True)
class SessionRow:
    """A session as the views show it."""

    session: Session
    ttl: int  # seconds; -1 no TTL, -2 gone

    @property
    def character_id(self) -> int:
        return self.session.character_id


async def session_batches(
    r: AnyRedis,
    *,
    fields: Sequence[str] = SESSION_FIELDS,
    stale_before: float | None = None,
    counter: list[int] | None = None,
    budget: StepBudget | None = None,
) -> AsyncIterator[list[SessionRow]]:
    """Every session, one SCAN step at a time, with ``fields`` and TTL read in the same
    server-side call (Lua, one round trip per step; the step size adapts to the server-time
    budget, ``budget``, starting at ``STEP_COUNT`` keys).

    With ``stale_before`` only sessions whose first field (``last_heartbeat``) is a plausible
    epoch older than it come back: a mostly-healthy server sends almost nothing. ``counter``,
    if given, receives the number of keys each step matched (sessions scanned).
    """
    if not isinstance(r, RedisCluster):
        async for rows in _node_session_batches(r, fields, stale_before, counter, budget):
            yield rows
        return

    async def whole_node(node: Redis) -> tuple[list[SessionRow], list[int]]:
        rows: list[SessionRow] = []
        counted: list[int] = []
        async for batch in _node_session_batches(node, fields, stale_before, counted, budget):
            rows.extend(batch)
        return rows, counted

    # every primary in parallel; the sessions of slots that moved meanwhile read again
    walk = await walk_primaries(r, whole_node)
    for rows, counted in walk.results:
        if counter is not None:
            counter.extend(counted)
        kept = [row for row in rows if walk.stable(keys.session_key(row.character_id))]
        if kept:
            yield kept
    moved = await keys_in_slots(r, walk, match=keys.SESSION_PATTERN)
    ids = [cid for cid in (keys.parse_session_key(k) for k in moved) if cid is not None]
    if ids:
        if counter is not None:
            counter.append(len(ids))
        again = list((await read_sessions(r, ids)).values())
        if stale_before is not None:
            again = [
                row
                for row in again
                if row.session.last_heartbeat is not None
                and row.session.last_heartbeat < stale_before
            ]
        if again:
            yield again


async def _node_session_batches(
    node: Redis,
    fields: Sequence[str],
    stale_before: float | None,
    counter: list[int] | None,
    budget: StepBudget | None,
) -> AsyncIterator[list[SessionRow]]:
    """:func:`session_batches` on one node."""
    mode = "all" if stale_before is None else "stale"
    if stale_before is not None:  # the script filters on the first field
        fields = ("last_heartbeat", *(f for f in fields if f != "last_heartbeat"))
    cutoff = repr(stale_before) if stale_before is not None else "0"
    width = 2 + len(fields)
    now = time.time()
    tail: list[str | int] = [len(fields), *fields, mode, repr(codec.MIN_PLAUSIBLE_EPOCH), cutoff]

    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, keys.SESSION_PATTERN, size, *tail]

    steps = node_walk(node, scripts.SCAN_HASH_FIELDS, args, budget or StepBudget(STEP_COUNT))
    async for reply in steps:
        if counter is not None:
            counter.append(int(reply[1]))
        items = reply[3:]
        rows = []
        for start in range(0, len(items), width):
            key, ttl, *values = items[start : start + width]
            cid = keys.parse_session_key(key)
            mapping = {f: v for f, v in zip(fields, values, strict=True) if v is not None}
            if cid is None or not mapping:
                continue
            rows.append(SessionRow(Session.decode(cid, mapping, now=now), int(ttl)))
        if rows:
            yield rows


async def read_sessions(r: AnyRedis, ids: Sequence[int]) -> dict[int, SessionRow]:
    """Full sessions (HGETALL + TTL) for ``ids``, pipelined; missing ones are left out."""
    now = time.time()
    commands: list[tuple[Any, ...]] = []
    for cid in ids:
        commands.append(("HGETALL", keys.session_key(cid)))
        commands.append(("TTL", keys.session_key(cid)))
    replies = await bulk(r, commands, raise_on_error=False)
    out = {}
    for index, cid in enumerate(ids):
        mapping = pairs(replies[2 * index])
        if mapping:
            ttl = replies[2 * index + 1]
            out[cid] = SessionRow(
                Session.decode(cid, mapping, now=now), ttl if isinstance(ttl, int) else -2
            )
    return out


async def presence_sets(r: AnyRedis) -> list[tuple[str, str]]:
    """(location id, key) of every presence set."""
    found: dict[str, str] = {}
    async for batch in scan_keys(r, keys.PRESENCE_PATTERN, count=BATCH):
        for key in batch:
            loc = keys.parse_presence_key(key)
            if loc is not None:
                found[loc] = key
    return sorted(found.items())


async def set_members(r: AnyRedis, key: str) -> set[str]:
    """All members of a set, read with SSCAN (bounded work per call)."""
    members: set[str] = set()
    cursor = 0
    while True:
        cursor, batch = await r.sscan(key, cursor, count=SSCAN_COUNT)
        members.update(str(m) for m in batch)
        if cursor == 0:
            return members


async def members_of_sets(
    r: AnyRedis, set_keys: Sequence[str], sizes: Sequence[int] | None = None
) -> dict[str, list[str]]:
    """Members of many sets: the first SSCAN page of every set in pipelined batches (a small
    set, the common case, is done then), the rest of the big ones page by page. Every call
    is an SSCAN with a COUNT (bounded work); a key that is not a set reads as empty.

    The batches go one at a time, sized by a :class:`StepBudget` from their round trips, in
    members when ``sizes`` (each set's SCARD, as the census read it) is given, else in sets:
    hundreds of SSCANs sent at once were all run by the server before it read another
    client's command (tens of ms for 500 sets of 400 members)."""
    out: dict[str, list[str]] = {}
    pending: list[tuple[str, str]] = []
    weights = list(sizes) if sizes is not None else [1] * len(set_keys)
    budget = StepBudget(2000 if sizes is not None else 20, low=1, high=1_000_000)
    start = 0
    while start < len(set_keys):
        end, weight = start, 0
        while end < len(set_keys) and (end == start or weight + weights[end] <= budget.size):
            weight += max(weights[end], 1)
            end += 1
        part = set_keys[start:end]
        started = time.perf_counter()
        replies = await bulk(
            r, [("SSCAN", key, 0, "COUNT", SSCAN_COUNT) for key in part], raise_on_error=False
        )
        budget.observe(weight, time.perf_counter() - started)
        start = end
        for key, reply in zip(part, replies, strict=True):
            if not isinstance(reply, list):
                out[key] = []
                continue
            cursor, members = reply
            out[key] = [str(m) for m in members]
            if str(cursor) != "0":
                pending.append((key, str(cursor)))
    for key, cursor in pending:
        found = set(out[key])
        while cursor != "0":
            next_cursor, batch = await r.sscan(key, int(cursor), count=SSCAN_COUNT)
            found.update(str(m) for m in batch)
            cursor = str(next_cursor)
        out[key] = list(found)
    return out


async def hash_fields(r: AnyRedis, key: str) -> list[str]:
    """All field names of a hash, read with HSCAN (bounded work per call, unlike HKEYS)."""
    names: list[str] = []
    cursor = 0
    while True:
        # (HSCAN NOVALUES needs Redis 7.4; connection values are a short word each)
        cursor, batch = await r.hscan(key, cursor, count=SSCAN_COUNT)
        names.extend(str(name) for name in batch)
        if cursor == 0:
            return names


async def location_names(r: AnyRedis, location_ids: Sequence[str]) -> dict[str, str]:
    """Display names from the static cache (``name`` field); missing ones are left out."""
    replies = await bulk(
        r,
        [("HGET", keys.location_cache_key(loc), "name") for loc in location_ids],
        raise_on_error=False,
    )
    return {
        loc: name for loc, name in zip(location_ids, replies, strict=True) if isinstance(name, str)
    }


# Numeric fields of a worker's meta hash (written as strings by the workers).
META_INTS = ("pid", "connections")
META_FLOATS = ("heartbeat", "started_at")


def meta_json(meta: Mapping[str, str]) -> dict[str, Any]:
    """A worker's meta hash for JSON output: pid, connections and times as numbers."""
    return codec.typed_fields(meta, ints=META_INTS, floats=META_FLOATS)


STALE_BEATS = 3  # a heartbeat older than this many intervals: the worker is unresponsive


def heartbeat_age(meta: Mapping[str, str], now: float) -> tuple[float | None, float]:
    """(seconds since the meta's heartbeat, or None when it names none; how old it may get
    while the worker is responsive: ``STALE_BEATS`` of its own heartbeat interval)."""
    try:
        every = float(meta.get("heartbeat_interval") or keys.WORKER_HEARTBEAT_INTERVAL)
    except ValueError:
        every = float(keys.WORKER_HEARTBEAT_INTERVAL)
    beat = meta.get("heartbeat")
    try:
        age = max(0.0, now - float(beat)) if beat else None
    except ValueError:
        age = None
    return age, STALE_BEATS * every


@dataclass(frozen=True)
class WorkerLiveness:
    """What the tier shows of one worker. The one rule every command and the dashboard use
    (docs/design.md, "Worker liveness"): see :attr:`state`."""

    worker_id: str
    meta: dict[str, str]
    meta_ttl: int
    client_connected: bool
    connections: int

    clients_visible: bool = True  # False when the ACL user may not run CLIENT LIST
    heartbeat_age: float | None = None  # seconds, when the meta names a heartbeat
    heartbeat_limit: float = STALE_BEATS * keys.WORKER_HEARTBEAT_INTERVAL

    @property
    def alive(self) -> bool:
        """The worker's process is still there: a client with its name is connected (a
        meta key left after a crash lives on until its short TTL runs out, so it only
        decides when CLIENT LIST is not allowed). A frozen process is alive but not
        responsive: its traces must not be cleaned up, and it is shown as unresponsive."""
        if self.clients_visible:
            return self.client_connected
        return bool(self.meta)

    @property
    def responsive(self) -> bool:
        """Its heartbeat is fresh (a meta without one, as older workers write, counts)."""
        return bool(self.meta) and (
            self.heartbeat_age is None or self.heartbeat_age <= self.heartbeat_limit
        )

    @property
    def state(self) -> str:
        """``alive`` (there and beating), ``unresponsive`` (there, heartbeat stale or
        missing: SIGSTOP, a stuck event loop) or ``dead``."""
        if not self.alive:
            return "dead"
        return "alive" if self.responsive else "unresponsive"


async def worker_liveness(
    r: AnyRedis, worker_ids: set[str] | None = None
) -> dict[str, WorkerLiveness]:
    """Liveness of ``worker_ids`` (default: every worker with a meta or connections key)."""
    ids: set[str] = set(worker_ids or ())
    if worker_ids is None:
        async for batch in scan_keys(r, keys.WORKER_META_PATTERN, count=BATCH):
            ids.update(w for w in map(keys.parse_worker_meta_key, batch) if w)
        async for batch in scan_keys(r, keys.WORKER_CONNECTIONS_PATTERN, count=BATCH):
            ids.update(w for w in map(keys.parse_worker_connections_key, batch) if w)
    names = await client_names(r)
    ordered = sorted(ids)
    commands: list[tuple[Any, ...]] = []
    for wid in ordered:
        commands += [
            ("HGETALL", keys.worker_meta_key(wid)),
            ("TTL", keys.worker_meta_key(wid)),
            ("HLEN", keys.worker_connections_key(wid)),
        ]
    replies = await bulk(r, commands, raise_on_error=False)
    now = time.time()
    out = {}
    for index, wid in enumerate(ordered):
        raw_meta, ttl, conns = replies[3 * index : 3 * index + 3]
        meta = pairs(raw_meta)
        age, limit = heartbeat_age(meta, now)
        out[wid] = WorkerLiveness(
            worker_id=wid,
            meta=meta,
            heartbeat_age=age,
            heartbeat_limit=limit,
            meta_ttl=ttl if isinstance(ttl, int) else -2,
            client_connected=names is not None and wid in names,
            connections=conns if isinstance(conns, int) else 0,
            clients_visible=names is not None,
        )
    return out


async def client_names(r: AnyRedis) -> set[str] | None:
    """Names of connected clients (workers set theirs to their id), or None when the ACL
    user may not run CLIENT LIST. CLIENT LIST is O(clients). On a cluster every node is
    asked, replicas too (a worker holds connections only to the nodes it has used)."""
    nodes = [n.client for n in await primary_nodes(r) + await replica_nodes(r)]
    single = len(nodes) == 1

    async def names_on(node: Redis) -> list[dict[str, str]]:
        try:
            return list(await node.client_list())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            if single:
                raise
            return []  # a cluster node that is down holds no client (cluster health says so)

    try:
        lists = await each_node(nodes, names_on)
    except NoPermissionError:
        return None
    return {c.get("name", "") for clients in lists for c in clients if c.get("name")}


CENSUS_COUNT = STEP_COUNT


class _Decoded(dict[Any, str | None]):
    """``codec.decode_str`` of each raw value, remembered."""

    def __missing__(self, raw: Any) -> str | None:
        value = self[raw] = codec.decode_str(raw)
        return value


@dataclass(slots=True)
class SessionBrief:
    """What a census reads of a session: enough to judge presence and liveness (mutable:
    reconcile replaces what a re-read at one instant says)."""

    location: str | None
    worker: str | None
    heartbeat: float | None  # wall-clock epoch seconds, None when unknown
    ttl: int


@dataclass
class Census:
    """One pass over the keyspace: the tier's keys and what the views need of each."""

    scanned: int = 0  # keys in the database walked (DBSIZE when the walk ended)
    sessions: dict[int, SessionBrief] = field(default_factory=dict)
    presence: dict[str, tuple[str, int]] = field(default_factory=dict)  # loc -> (key, members)
    inventories: dict[str, int] = field(default_factory=dict)  # key -> ttl
    locks: dict[str, int] = field(default_factory=dict)  # key -> ttl
    worker_metas: set[str] = field(default_factory=set)
    worker_connections: set[str] = field(default_factory=set)


async def census(
    r: AnyRedis, *, count: int = CENSUS_COUNT, budget: StepBudget | None = None
) -> Census:
    """Walk the keyspace once (Lua SCAN steps, the first of ``count`` keys, then sized by
    ``budget`` to the server-time budget) and sort out the tier."""
    result = Census()
    now = time.time()
    sessions = result.sessions
    decode_epoch = codec.decode_epoch
    # locations and worker ids repeat across sessions (hundreds of values for 100,000s of
    # sessions): each distinct text is decoded once, and the sessions share one string each
    text = _Decoded()
    lowest, highest = codec.MIN_PLAUSIBLE_EPOCH, now + codec.MAX_FUTURE_SKEW

    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, size]

    async for reply in lua_walk(r, scripts.CENSUS_STEP, args, budget or StepBudget(count)):
        found, rows = reply[3], reply[4]
        for cid, ttl, location, worker, beat in zip(
            found[0::5], found[1::5], found[2::5], found[3::5], found[4::5], strict=True
        ):
            try:  # the common case, a plain number, without the codec's general path
                value = float(beat)
            except (TypeError, ValueError):
                heartbeat = decode_epoch(beat, now=now)
            else:  # the codec's bounds (NaN compares false: unknown, as there)
                heartbeat = value if lowest <= value <= highest else None
            sessions[int(cid)] = SessionBrief(text[location], text[worker], heartbeat, int(ttl))
        for start in range(0, len(rows), 3):
            code, key, n = rows[start : start + 3]
            if code == "p":
                loc = keys.parse_presence_key(key)
                if loc is not None:
                    result.presence[loc] = (key, int(n))
            elif code == "i":
                result.inventories[key] = int(n)
            elif code == "l":
                result.locks[key] = int(n)
            elif code == "m":
                wid = keys.parse_worker_meta_key(key)
                if wid:
                    result.worker_metas.add(wid)
            elif code == "c":
                wid = keys.parse_worker_connections_key(key)
                if wid:
                    result.worker_connections.add(wid)
    # the steps' MATCH passes over other keys inside the server, uncounted: the size of the
    # keyspace walked is the database's (every primary's on a cluster)
    result.scanned = sum([await node.dbsize() for node in await primary_clients(r)])
    return result
