"""Redis' own view of latency, and ours: SLOWLOG entries (decoded: which client, which
command on which key family), ``LATENCY LATEST`` and ``HISTORY`` per event, and a round-trip
sample like ``redis-cli --latency`` (sequential PINGs timed on this side).

Every command is O(1) or bounded: SLOWLOG GET of at most ``limit`` entries, LATENCY LATEST
(one row per event), one LATENCY HISTORY per event (at most 160 points each), CONFIG GET of
three settings, EXISTS for the distinct client names of the entries, and ``samples`` PINGs
one after another. A command the ACL denies leaves its part empty with a note.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_node, primary_nodes
from echoes_ops.operations.clusterinfo import first_primary, server_time
from echoes_ops.operations.keyspace import family_of
from echoes_ops.operations.stats.connections import channel_family, named_workers
from echoes_ops.operations.stats.model import OwnLoad

SLOWLOG_LIMIT: Final = 20
PING_SAMPLES: Final = 100
# commands whose first argument is not a key (their family is "server")
KEYLESS: Final = frozenset(
    {
        "ACL",
        "AUTH",
        "BGREWRITEAOF",
        "BGSAVE",
        "CLIENT",
        "CLUSTER",
        "COMMAND",
        "CONFIG",
        "DBSIZE",
        "DEBUG",
        "DISCARD",
        "ECHO",
        "EXEC",
        "FLUSHALL",
        "FLUSHDB",
        "FUNCTION",
        "HELLO",
        "INFO",
        "KEYS",
        "LASTSAVE",
        "LATENCY",
        "MODULE",
        "MONITOR",
        "MULTI",
        "PING",
        "PSUBSCRIBE",
        "PUBSUB",
        "PUNSUBSCRIBE",
        "QUIT",
        "READONLY",
        "READWRITE",
        "REPLICAOF",
        "ROLE",
        "SAVE",
        "SCAN",
        "SCRIPT",
        "SELECT",
        "SHUTDOWN",
        "SLAVEOF",
        "SLOWLOG",
        "SSUBSCRIBE",
        "SUBSCRIBE",
        "SUNSUBSCRIBE",
        "SWAPDB",
        "SYNC",
        "PSYNC",
        "TIME",
        "UNSUBSCRIBE",
        "UNWATCH",
        "WAIT",
        "WAITAOF",
    }
)
SCRIPT_COMMANDS: Final = frozenset(
    {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}
)
PUBLISH_COMMANDS: Final = frozenset({"PUBLISH", "SPUBLISH"})


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def command_family(args: list[str]) -> str:
    """What an entry's command touched: the key family of its first key (``sessions``,
    ``presence``, ...), ``script:<family>`` for scripts, ``pubsub:<channel family>`` for a
    publish, ``server`` for commands without keys."""
    if not args:
        return "server"
    name = args[0].upper()
    if name in PUBLISH_COMMANDS:
        return f"pubsub:{channel_family(args[1])}" if len(args) > 1 else "pubsub"
    if name in SCRIPT_COMMANDS:
        if len(args) > 3 and args[2].isdigit() and int(args[2]) > 0:
            return f"script:{family_of(args[3])}"
        return "script"
    if name == "MEMORY" and len(args) > 2 and args[1].upper() == "USAGE":
        return family_of(args[2])
    if name in KEYLESS or len(args) < 2:
        return "server"
    return family_of(args[1])


@dataclass(frozen=True)
class SlowEntry:
    id: int
    at: float  # epoch seconds, server clock
    duration_us: int
    command: str  # the command name (and subcommand for container commands)
    key: str | None  # the first key, for keyed commands
    args: int  # how many arguments followed the command name (values are not shown)
    family: str  # see command_family
    client_addr: str
    client_name: str
    worker: bool  # the client is named after a game worker
    node: str = ""  # host:port of the cluster node that logged it ("" on one server)

    @property
    def client(self) -> str:
        return self.client_name or self.client_addr or "?"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "client": self.client}


@dataclass(frozen=True)
class LatencyEvent:
    event: str
    latest_at: float
    latest_ms: int
    max_ms: int
    history: list[tuple[float, int]]  # (epoch seconds, ms), oldest first

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [{"at": at, "ms": ms} for at, ms in self.history]
        return out


@dataclass(frozen=True)
class RoundTrip:
    """PING round trips measured here, like ``redis-cli --latency``."""

    samples: int
    min_ms: float
    avg_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> RoundTrip:
        ms = sorted(s * 1000 for s in seconds)
        if not ms:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        p99 = ms[max(0, math.ceil(0.99 * len(ms)) - 1)]
        return cls(len(ms), ms[0], sum(ms) / len(ms), p99, ms[-1])

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class LatencyReport:
    taken_at: float
    slowlog: list[SlowEntry]
    slowlog_len: int | None  # entries the server keeps (None: SLOWLOG denied)
    slower_than_us: int | None  # slowlog-log-slower-than (None: CONFIG denied)
    slowlog_max_len: int | None
    monitor_threshold_ms: int | None  # latency-monitor-threshold; 0 = the monitor is off
    events: list[LatencyEvent]
    round_trip: RoundTrip
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": round(self.taken_at, 3),
            "slowlog": {
                "entries": [e.as_dict() for e in self.slowlog],
                "length": self.slowlog_len,
                "slower_than_us": self.slower_than_us,
                "max_len": self.slowlog_max_len,
            },
            "latency_monitor": {
                "threshold_ms": self.monitor_threshold_ms,
                "events": [e.as_dict() for e in self.events],
            },
            "round_trip": self.round_trip.as_dict(),
            "notes": self.notes,
        }


async def _config(r: AnyRedis, notes: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("slowlog-log-slower-than", "slowlog-max-len", "latency-monitor-threshold"):
        try:
            reply = await r.config_get(name)
        except (NoPermissionError, ResponseError) as exc:
            notes.append(f"CONFIG GET not allowed ({exc}): thresholds unknown")
            return out
        for key, value in reply.items():
            try:
                out[_text(key)] = int(str(value))
            except (TypeError, ValueError):
                continue
    return out


def _entry(raw: list[Any], workers: set[str]) -> SlowEntry:
    args = [_text(a) for a in raw[3]] if isinstance(raw[3], list) else []
    name = args[0].upper() if args else "?"
    if len(args) > 1 and name in {"CLIENT", "CONFIG", "MEMORY", "SCRIPT", "OBJECT", "XINFO"}:
        name = f"{name} {args[1].upper()}"
    family = command_family(args)
    key = None
    if family not in ("server", "script") and not family.startswith("pubsub"):
        key = args[2] if args[0].upper() == "MEMORY" else args[1]
        if family.startswith("script:"):
            key = args[3]
    client_name = _text(raw[5]) if len(raw) > 5 else ""
    return SlowEntry(
        id=int(raw[0]),
        at=float(raw[1]),
        duration_us=int(raw[2]),
        command=name,
        key=key,
        args=max(0, len(args) - 1),
        family=family,
        client_addr=_text(raw[4]) if len(raw) > 4 else "",
        client_name=client_name,
        worker=bool(client_name) and client_name in workers,
    )


async def _slowlog(r: AnyRedis, limit: int, notes: list[str]) -> tuple[list[SlowEntry], int | None]:
    """SLOWLOG of the server, or of every primary of a cluster (newest first, each entry
    naming its node)."""
    nodes = await primary_nodes(r)
    try:
        replies = await each_node(
            [n.client for n in nodes],
            lambda node: bulk(node, [("SLOWLOG", "GET", limit), ("SLOWLOG", "LEN")]),
        )
    except (NoPermissionError, ResponseError) as exc:
        notes.append(f"SLOWLOG not allowed: {exc}")
        return [], None
    names = {_text(e[5]) for raw, _ in replies for e in raw if len(e) > 5 and e[5]}
    workers = await named_workers(r, names, OwnLoad()) if names else set()
    clustered = len(nodes) > 1
    entries = [
        replace(_entry(e, workers), node=node.name if clustered else "")
        for node, (raw, _) in zip(nodes, replies, strict=True)
        for e in raw
    ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit], sum(int(length) for _, length in replies)


async def _events(r: AnyRedis, notes: list[str]) -> list[LatencyEvent]:
    """LATENCY events of the server, or of every primary of a cluster (an event's name
    prefixed with its node there)."""
    nodes = await primary_nodes(r)
    if len(nodes) == 1:
        return await _node_events(nodes[0].client, notes)
    found = await each_node([n.client for n in nodes], lambda node: _node_events(node, notes))
    merged = [
        replace(event, event=f"{node.name} {event.event}")
        for node, events in zip(nodes, found, strict=True)
        for event in events
    ]
    return sorted(merged, key=lambda e: e.event)


async def _node_events(r: Redis, notes: list[str]) -> list[LatencyEvent]:
    try:
        (latest,) = await bulk(r, [("LATENCY", "LATEST")])
        names = [_text(row[0]) for row in latest]
        histories = await bulk(r, [("LATENCY", "HISTORY", name) for name in names])
        out = []
        for row, event, history in zip(latest, names, histories, strict=True):
            out.append(
                LatencyEvent(
                    event=event,
                    latest_at=float(row[1]),
                    latest_ms=int(row[2]),
                    max_ms=int(row[3]),
                    history=[(float(at), int(ms)) for at, ms in history],
                )
            )
    except (NoPermissionError, ResponseError) as exc:
        notes.append(f"LATENCY not allowed: {exc}")
        return []
    return sorted(out, key=lambda e: e.event)


async def round_trip(r: AnyRedis, samples: int) -> RoundTrip:
    """``samples`` PINGs one after another, each timed from send to reply."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await r.ping()
        times.append(time.perf_counter() - started)
    return RoundTrip.of(times)


async def latency_report(
    r: AnyRedis, *, limit: int = SLOWLOG_LIMIT, samples: int = PING_SAMPLES
) -> LatencyReport:
    notes: list[str] = []
    config = await _config(await first_primary(r), notes)
    slowlog, length = await _slowlog(r, limit, notes)
    events = await _events(r, notes)
    threshold = config.get("latency-monitor-threshold")
    if threshold == 0:
        notes.append(
            "the latency monitor is off (latency-monitor-threshold 0): no LATENCY events are "
            "recorded; enable with CONFIG SET latency-monitor-threshold 100 (ms)"
        )
    return LatencyReport(
        taken_at=await server_time(r),
        slowlog=slowlog,
        slowlog_len=length,
        slower_than_us=config.get("slowlog-log-slower-than"),
        slowlog_max_len=config.get("slowlog-max-len"),
        monitor_threshold_ms=threshold,
        events=events,
        round_trip=await round_trip(r, samples),
        notes=notes,
    )
