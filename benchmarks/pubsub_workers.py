"""Child processes of ``benchmarks/pubsub.py``: reference workers and paced publishers.

Both run under multiprocessing's ``spawn`` start method, so everything they receive is a
picklable spec and everything they return goes through a queue.

A worker process runs one reference :class:`~echoes_ops.runtime.worker.Worker` (unchanged)
with its players connected, and answers commands from the parent:

- ``("collect", settle, max_wait)``: wait until no message arrived for ``settle`` seconds
  (at most ``max_wait``), report what arrived since the last collect, then start over;
- ``("stop",)``: stop the worker gracefully and exit.

Latency is measured in the worker's ``on_delivery`` hook, i.e. when the delivery is in the
player's inbox: ``time.time()`` there minus the envelope's ``sent_at``. (The worker's own
``stats.latencies_ms`` is also stamped after routing now; the probe measures the same.)

A publisher process writes ``PUBLISH`` commands to a raw socket, each one written as soon
as it is due (message ``i`` of ``n`` publishers at ``t0 + i / rate``), with ``sent_at``
stamped as it is built; only when it is behind schedule does it build up to ``coalesce``
due messages before one write. Replies are read without waiting for them, so the round
trip does not limit the rate. It knows where every player is, so it records how many inbox
deliveries each message should make.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import os
import queue
import random
import signal
import socket
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.crc import key_slot

from echoes_ops.client.connect import make_client
from echoes_ops.config import Settings
from echoes_ops.contract import envelopes
from echoes_ops.contract.pubsub import publish_command
from echoes_ops.contract.session import Session
from echoes_ops.runtime.worker import Connection, Delivery, Worker, WorkerOptions

NAMES = ("Ash", "Cinder", "Rook", "Vale", "Moss", "Tarn", "Quill", "Wren", "Flint", "Sable")
DIRECTIONS = ("north", "south", "east", "west", "the ruins", "the river")


# -- specs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierSpec:
    """Where the workers and publishers go: one server, or a cluster's primaries (a
    message is published on the primary owning its channel's slot, in either mode, so the
    two modes differ only in the cluster bus forwarding and the subscriptions)."""

    url: str
    nodes: tuple[tuple[str, int], ...]  # primaries (one server: itself)
    slot_node: bytes = b""  # cluster: per slot, the index in ``nodes`` of its primary
    cluster: bool = False
    pubsub_mode: str = "classic"
    pids: tuple[int, ...] = ()  # server processes (CPU accounting)

    def node_of(self, channel: str) -> int:
        return self.slot_node[key_slot(channel.encode("utf-8"))] if self.slot_node else 0

    def settings_env(self) -> dict[str, str]:
        env = {"REDIS_URL": self.url, "REDIS_PUBSUB_MODE": self.pubsub_mode}
        if self.cluster:
            env["REDIS_CLUSTER"] = "true"
        return env


@dataclass(frozen=True)
class WorkerSpec:
    tier: TierSpec
    worker_id: str
    routing: str  # "local" or "plan"
    location_ids: tuple[str, ...]
    players: tuple[tuple[int, str], ...]  # (character id, location id)
    profile_path: str | None = None  # cProfile the measured windows into this file
    inbox_size: int = 32  # WorkerOptions.inbox_size (deliveries kept per player)
    gc_freeze: bool = False  # experiment: gc.freeze() once the players are connected


@dataclass(frozen=True)
class PublisherSpec:
    host: str
    port: int
    index: int  # this publisher's index among ``publishers``
    publishers: int
    rate: float  # total target rate of all publishers, msg/s
    count: int  # messages this publisher sends
    tag: str  # msg_id prefix, unique per measured window
    seed: int
    location_ids: tuple[str, ...]
    members: dict[str, tuple[int, ...]]  # location -> players connected there (all workers)
    subscribers: int  # worker processes expected to receive each message
    exclude_share: float = 0.5  # share of messages that exclude one member (the actor)
    coalesce: int = 8  # most messages per socket write, only when behind schedule
    tier: TierSpec | None = None  # None: host/port, PUBLISH


# -- worker process ---------------------------------------------------------------------


class _Probe:
    """The ``on_delivery`` hook: inbox latency and deliveries per msg_id."""

    def __init__(self) -> None:
        self.latencies = array("d")
        self.per_msg: Counter[str] = Counter()

    def on_delivery(self, conn: Connection, delivery: Delivery) -> None:
        now = time.time()
        envelope = delivery.envelope
        if envelope.sent_at is not None:
            self.latencies.append((now - envelope.sent_at) * 1000.0)
        if envelope.msg_id is not None:
            self.per_msg[envelope.msg_id] += 1


class _GcClock:
    """Time spent in the garbage collector (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: list[tuple[int, float]] = []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            self.pauses.append((int(info.get("generation", 0)), time.perf_counter() - self.started))
            self.started = None

    def take(self) -> dict[str, float]:
        pauses, self.pauses = self.pauses, []
        gen2 = [p for g, p in pauses if g == 2]
        return {
            "collections": len(pauses),
            "total_ms": round(sum(p for _, p in pauses) * 1000, 2),
            "max_ms": round(max((p for _, p in pauses), default=0.0) * 1000, 2),
            "gen2": len(gen2),
            "gen2_max_ms": round(max(gen2, default=0.0) * 1000, 2),
        }


def _ignore_sigint() -> None:
    """The parent decides when to stop; it started us with SIGINT blocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def worker_process(spec: WorkerSpec, commands: Any, replies: Any) -> None:
    _ignore_sigint()
    asyncio.run(_worker_main(spec, commands, replies))


async def _worker_main(spec: WorkerSpec, commands: Any, replies: Any) -> None:
    parent = os.getppid()
    target = Settings.load(env=spec.tier.settings_env()).redis_target()
    client = make_client(target, client_name=spec.worker_id)
    probe = _Probe()
    worker = Worker(
        client,
        WorkerOptions(
            worker_id=spec.worker_id,
            location_ids=spec.location_ids,
            run_spawn_task=False,
            routing="plan" if spec.routing == "plan" else "local",
            inbox_size=spec.inbox_size,
            record_deliveries=True,
            pubsub_mode=target.pubsub_mode,
        ),
        on_delivery=probe.on_delivery,
    )
    gc_clock = _GcClock()
    profiler = cProfile.Profile() if spec.profile_path else None
    started = False
    try:
        await worker.start()
        started = True
        for cid, location in spec.players:
            await worker.connect_player(_session(cid, location))
        if spec.gc_freeze:
            gc.collect()
            gc.freeze()
        replies.put(("ready", spec.worker_id, os.getpid()))
        window = (time.perf_counter(), time.process_time(), worker.stats.duplicates)
        while True:
            try:
                command = commands.get_nowait()
            except queue.Empty:
                if os.getppid() != parent:
                    return  # the parent is gone: nobody will collect
                await asyncio.sleep(0.02)
                continue
            if command[0] == "stop":
                break
            if command[0] == "collect":
                _, settle, max_wait = command
                await _quiet(worker, settle, max_wait)
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(spec.profile_path)
                report = _report(worker, probe, window, gc_clock)
                replies.put(("report", spec.worker_id, report))
                _reset(worker, probe)
                window = (time.perf_counter(), time.process_time(), worker.stats.duplicates)
                if profiler is not None:
                    profiler = cProfile.Profile()
                    profiler.enable()
    except Exception as exc:
        replies.put(("error", spec.worker_id, f"{type(exc).__name__}: {exc}"))
    finally:
        if started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.stop(), timeout=10)
        with contextlib.suppress(Exception):
            await client.aclose()
        # The parent has read every report before it sends "stop"; if it was interrupted
        # instead, do not let an unread report in the queue's pipe keep this process alive.
        replies.cancel_join_thread()


def _session(cid: int, location: str) -> Session:
    return Session(
        character_id=cid,
        username=f"{NAMES[cid % len(NAMES)]}{cid}",
        location_id=location,
        hp=100,
        max_hp=100,
        stamina=50,
        max_stamina=50,
        level=1 + cid % 20,
        xp=cid * 7 % 5000,
        websocket_connected=True,
        in_combat=False,
    )


async def _quiet(worker: Worker, settle: float, max_wait: float) -> None:
    """Wait until nothing new arrived for ``settle`` seconds (backlog drained)."""
    deadline = time.monotonic() + max_wait
    last = (-1, -1)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        now = (len(worker.stats.received_ids), worker.stats.duplicates)
        if now != last:
            last = now
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= settle:
            return
        await asyncio.sleep(0.05)


def _report(
    worker: Worker, probe: _Probe, window: tuple[float, float, int], gc_clock: _GcClock
) -> dict[str, Any]:
    wall0, cpu0, dup0 = window
    stats = worker.stats
    return {
        "received_ids": list(stats.received_ids),
        "duplicates": stats.duplicates - dup0,
        "per_msg": dict(probe.per_msg),
        "latencies": probe.latencies.tobytes(),
        "worker_latencies": array("d", stats.latencies_ms).tobytes(),
        "delivered": sum(probe.per_msg.values()),
        "reconnects": stats.reconnects,
        "undecodable": stats.undecodable,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
        "gc": {**gc_clock.take(), "tracked": len(gc.get_objects())},
    }


def _reset(worker: Worker, probe: _Probe) -> None:
    worker.stats.received_ids.clear()
    worker.stats.latencies_ms.clear()
    probe.latencies = array("d")
    probe.per_msg = Counter()


# -- publisher process --------------------------------------------------------------------


def publisher_process(spec: PublisherSpec, go: Any, t0: Any, replies: Any) -> None:
    _ignore_sigint()
    try:
        replies.put(("done", spec.index, _publish(spec, go, t0, replies)))
    except Exception as exc:
        replies.put(("error", spec.index, f"{type(exc).__name__}: {exc}"))


def _payload(rng: random.Random, cid: int, location: str, other: str) -> dict[str, Any]:
    """About the size of the game's movement broadcast (~300 bytes as an envelope)."""
    name = f"{NAMES[cid % len(NAMES)]}{cid}"
    return {
        "type": "location_update",
        "data": {
            "message": f"{name} arrives from {rng.choice(DIRECTIONS)}.",
            "action": "player_arrived",
            "player_id": cid,
            "player_name": name,
            "player_level": 1 + cid % 20,
            "from_location": other,
            "to_location": location,
        },
    }


class _Link:
    """One publisher connection (to one server, or one cluster primary)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.pending: list[bytes] = []
        self.sent = self.answered = self.receivers = self.errors = 0

    def drain(self, block: bool) -> None:
        try:
            data = (
                self.sock.recv(1 << 16) if block else self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            )
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("Redis closed the publisher's connection")
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.answered += 1
            if isinstance(reply, int):
                self.receivers += reply
            else:
                self.errors += 1

    def flush(self) -> bool:
        if not self.pending:
            return False
        self.sock.sendall(b"".join(self.pending))
        self.sent += len(self.pending)
        self.pending.clear()
        return True


def _publish(spec: PublisherSpec, go: Any, t0: Any, replies: Any) -> dict[str, Any]:
    rng = random.Random(spec.seed)
    locations = spec.location_ids
    all_players = sorted({cid for members in spec.members.values() for cid in members}) or [1]
    tier = spec.tier
    mode = tier.pubsub_mode if tier is not None else "classic"
    links = [
        _Link(h, p) for h, p in (tier.nodes if tier is not None else ((spec.host, spec.port),))
    ]
    ids: list[str] = []
    expected = array("l")
    lateness = array("d")
    replies.put(("ready", spec.index, os.getpid()))
    if not go.wait(60):
        raise TimeoutError("no go signal within 60 s")
    start = t0.value
    step = spec.publishers / spec.rate
    offset = spec.index / spec.rate
    cpu0 = time.process_time()
    first = last = 0.0
    size = 0
    pending_due: list[float] = []
    writes = 0
    try:
        for i in range(spec.count):
            due = start + offset + i * step
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            location = locations[rng.randrange(len(locations))]
            members = spec.members.get(location, ())
            exclude = None
            if members and rng.random() < spec.exclude_share:
                exclude = members[rng.randrange(len(members))]
            actor = exclude if exclude is not None else rng.choice(all_players)
            msg_id = f"{spec.tag}{spec.index}-{i}"
            envelope = envelopes.location_update(  # stamps sent_at = now
                location,
                _payload(rng, actor, location, locations[(i * 7) % len(locations)]),
                exclude_player_id=exclude,
                msg_id=msg_id,
            )
            body = envelope.to_json()
            link = links[tier.node_of(envelope.channel) if tier is not None else 0]
            command = publish_command(envelope.channel, mode)  # type: ignore[arg-type]
            link.pending.append(hiredis.pack_command((command, envelope.channel, body)))
            pending_due.append(due)
            ids.append(msg_id)
            size = len(body)
            expected.append(len(members) - (exclude is not None))
            # Behind schedule (the next message is already due): build it before writing,
            # up to spec.coalesce messages per write. Each keeps its own sent_at, stamped
            # at most a few builds (~10 µs each) before the write, never after.
            next_due = due + step
            if (
                len(pending_due) < spec.coalesce
                and i + 1 < spec.count
                and next_due <= time.monotonic()
            ):
                continue
            writes += sum(link.flush() for link in links)
            sent = time.monotonic()
            if not first:
                first = sent
            last = sent
            lateness.extend((sent - d) * 1000.0 for d in pending_due)
            pending_due.clear()
            if writes % 32 == 0:
                for link in links:
                    link.drain(block=False)
        cpu = time.process_time() - cpu0
        for link in links:
            link.sock.settimeout(10)
            while link.answered < link.sent:
                link.drain(block=True)
    finally:
        for link in links:
            link.sock.close()
    return {
        "ids": ids,
        "expected": expected.tobytes(),
        "first": first,
        "last": last,
        "lateness": lateness.tobytes(),
        "receivers": sum(link.receivers for link in links),
        "subscribers": spec.subscribers,
        "errors": sum(link.errors for link in links),
        "cpu_s": cpu,
        "bytes": size,
        "writes": writes,
    }
