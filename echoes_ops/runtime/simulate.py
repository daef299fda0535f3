"""Run N reference workers as real OS processes with M simulated players, and measure.

The parent starts the worker processes, waits until every one is subscribed, lets the
players play for ``duration`` seconds (optionally SIGKILLing some workers mid-run to make
realistic drift), then asks the survivors to stop gracefully and collects their reports:
what each published (``msg_id``, family, time) and which ``msg_id`` each received.

Delivery is counted per worker: every surviving worker subscribes to ``game:broadcast``
and every location channel for the whole run, so each location message published by a
survivor is expected once by every survivor; a personal message is expected once by the
worker that holds the player. ``lost`` = expected - received; ``duplicated`` = the same
``msg_id`` received twice by one worker. Latency is publish (``sent_at``) to the player's
inbox, wall clock on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import random
import signal
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import make_client, open_redis
from echoes_ops.client.scan import collect_keys
from echoes_ops.config import RedisTarget
from echoes_ops.contract import keys
from echoes_ops.runtime.failover import (
    FailoverReport,
    Victim,
    choose_victim,
    failover_report,
    kill,
    publish_counts,
    publish_deltas,
    slot_owner,
)
from echoes_ops.runtime.players import PlayerDriver, PlayerPlan
from echoes_ops.runtime.worker import Worker, WorkerOptions

REPORT_EVERY = 1.0
STOP_WAIT = 30.0  # seconds the workers get to report after being asked to stop
SETTLE = 0.5  # once every worker has stopped publishing, wait this long for in-flight messages
QUIET_WAIT = 10.0  # the longest the others wait for a worker to stop publishing (a dead one)


@dataclass(frozen=True)
class SimConfig:
    target: RedisTarget
    exits: Mapping[str, Sequence[str]]
    workers: int = 4
    players: int = 1000
    duration: float = 30.0
    move_rate: float = 0.2
    fight_rate: float = 0.05
    reconnect_rate: float = 0.01
    seed: int = 1
    crash_workers: int = 0
    spawn_interval: float = 5.0
    heartbeat_interval: float = 5.0
    worker_prefix: str = "sim"
    database_url: str | None = None  # workers follow REDIS_ENABLED from PostgreSQL
    kill_primary: float | None = None  # SIGKILL a local cluster primary this long into play


@dataclass
class Progress:
    elapsed: float
    workers_alive: int
    players: int
    published: int
    delivered: int


@dataclass
class SimResult:
    workers: int
    players: int
    duration_s: float
    crashed: list[str]
    published: dict[str, int]
    expected: int
    received: int
    lost: int
    duplicated: int
    delivered_to_inboxes: int
    latency_ms: dict[str, float]
    moves: int
    fights: int
    reconnects: int
    worker_reconnects: int
    spawn_runs: int
    leftover: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    pubsub_mode: str = "classic"
    # INFO commandstats calls during the run, per primary: {"publish": n, "spublish": n}
    publish_by_node: dict[str, dict[str, int | None]] = field(default_factory=dict)
    failover: FailoverReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": round(ordered[-1], 3),
        "count": len(ordered),
        "mean": round(statistics.fmean(ordered), 3),
    }


# -- the worker process ---------------------------------------------------------------


def _worker_process(
    index: int, config: SimConfig, reports: Any, go: Any, stop: Any, settle: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    asyncio.run(_worker_main(index, config, reports, go, stop, settle))


async def _worker_main(
    index: int, config: SimConfig, reports: Any, go: Any, stop: Any, settle: Any
) -> None:
    worker_id = f"{config.worker_prefix}-{index + 1}"
    client = make_client(config.target, client_name=worker_id)
    worker = Worker(
        client,
        WorkerOptions(
            worker_id=worker_id,
            location_ids=sorted(config.exits),
            spawn_interval=config.spawn_interval,
            spawn_lock_ttl=max(10.0, config.spawn_interval * 2),
            database_url=config.database_url,
            record_deliveries=True,
            pubsub_mode=config.target.pubsub_mode,
        ),
    )
    ids = [cid for cid in range(1, config.players + 1) if (cid - 1) % config.workers == index]
    driver = PlayerDriver(
        worker,
        ids,
        config.exits,
        PlayerPlan(
            move_rate=config.move_rate,
            fight_rate=config.fight_rate,
            reconnect_rate=config.reconnect_rate,
            heartbeat_interval=config.heartbeat_interval,
        ),
        random.Random(config.seed * 1000 + index),
    )
    try:
        await worker.start()
        await driver.connect_all()
        reports.put(("ready", worker_id, os.getpid()))
        # a stop before the go (Ctrl-C while the others start) ends the wait too: the
        # worker reports and disconnects its players rather than wait for a go never sent
        while not go.is_set() and not stop.is_set():
            await asyncio.sleep(0.01)
        playing = asyncio.Event()
        task = asyncio.create_task(driver.run(playing))
        last = 0.0
        while not stop.is_set():
            await asyncio.sleep(0.05)
            if time.monotonic() - last >= REPORT_EVERY:
                last = time.monotonic()
                reports.put(
                    (
                        "progress",
                        worker_id,
                        len(driver.published),
                        worker.stats.delivered,
                        len(worker.connections),
                    )
                )
        playing.set()
        await task
        # two phases: the settling starts once every worker has stopped publishing (the
        # parent's ``settle``), so a worker that was slow to stop is not still sending
        # while another has already reported what it received
        reports.put(("quiet", worker_id))
        waited = time.monotonic() + QUIET_WAIT
        while not settle.is_set() and time.monotonic() < waited:
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE)
        reports.put(
            (
                "final",
                worker_id,
                {
                    "published": [(p.msg_id, p.family, p.sent_at) for p in driver.published],
                    "received": sorted(worker.stats.received_ids),
                    "stats": worker.stats.as_dict(),
                    "latencies": worker.stats.latencies_ms,
                    "moves": driver.moves,
                    "fights": driver.fights,
                    "reconnects": driver.reconnects,
                    "error_times": driver.error_times,
                },
            )
        )
        await worker.stop()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which prints one line
        reports.put(("error", worker_id, f"{type(exc).__name__}: {exc}"))
    finally:
        await client.aclose()


# -- the parent -----------------------------------------------------------------------


class Simulation:
    def __init__(
        self,
        config: SimConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.on_progress = on_progress
        self.on_phase = on_phase
        ctx = mp.get_context("spawn")
        self.reports = ctx.Queue()
        self.go = ctx.Event()
        self.stop = ctx.Event()
        self.settle = ctx.Event()
        self.processes = [
            ctx.Process(
                target=_worker_process,
                args=(i, config, self.reports, self.go, self.stop, self.settle),
                name=f"{config.worker_prefix}-{i + 1}",
                daemon=True,
            )
            for i in range(config.workers)
        ]
        self.pids: dict[str, int] = {}
        self.progress: dict[str, tuple[int, int, int]] = {}
        self.quiet: set[str] = set()  # workers that stopped publishing (or failed)
        self.finals: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.crashed: list[str] = []
        self.victim: Victim | None = None
        self.killed_at: float | None = None  # epoch seconds
        self.play_started = 0.0  # epoch seconds

    def _drain(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.reports.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            kind, worker_id, *rest = item
            if kind == "ready":
                self.pids[worker_id] = rest[0]
            elif kind == "progress":
                self.progress[worker_id] = (rest[0], rest[1], rest[2])
            elif kind == "quiet":
                self.quiet.add(worker_id)
            elif kind == "final":
                self.finals[worker_id] = rest[0]
            elif kind == "error":
                self.errors.append(f"{worker_id}: {rest[0]}")
                self.quiet.add(worker_id)
            if time.monotonic() >= deadline:
                return

    def run(self) -> SimResult:
        interrupted = finished = False
        started = time.monotonic()
        for process in self.processes:
            process.start()
        try:
            deadline = time.monotonic() + 60
            while len(self.pids) < self.config.workers and not self.errors:
                if time.monotonic() > deadline:
                    raise TimeoutError("workers did not become ready within 60 s")
                self._drain(0.2)
            if self.errors:
                raise RuntimeError(self.errors[0])
            if self.config.kill_primary is not None:
                self.victim = asyncio.run(
                    choose_victim(
                        self.config.target,
                        self.config.target.pubsub_mode,
                        sorted(self.config.exits),
                    )
                )
                self._phase(
                    f"will kill primary {self.victim.node} (pid {self.victim.pid}, owner of "
                    f"{self.victim.channels} subscribed channel(s)) {self.config.kill_primary:g}s "
                    "into play"
                )
            self.go.set()
            play_started = time.monotonic()
            self.play_started = time.time()
            crash_at = play_started + self.config.duration / 2
            kill_at = play_started + (self.config.kill_primary or 0.0)
            while time.monotonic() - play_started < self.config.duration:
                self._drain(0.05 if self.victim is not None and self.killed_at is None else 0.2)
                if self.config.crash_workers and not self.crashed and time.monotonic() >= crash_at:
                    self._crash(self.config.crash_workers)
                if (
                    self.victim is not None
                    and self.killed_at is None
                    and time.monotonic() >= kill_at
                ):
                    kill(self.victim)
                    self.killed_at = time.time()
                    self._phase(f"killed primary {self.victim.node} (SIGKILL)")
                if self.on_progress is not None:
                    self.on_progress(self._snapshot(time.monotonic() - play_started))
            finished = True
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.stop.set()
            survivors = self.config.workers - len(self.crashed)
            why = "interrupted" if interrupted else ("time is up" if finished else "failed")
            self._phase(
                f"{why}: stopping {survivors} worker(s) (their players disconnect), "
                f"waiting up to {STOP_WAIT:.0f}s for their reports"
            )
            deadline = time.monotonic() + STOP_WAIT
            quiet_by = time.monotonic() + QUIET_WAIT
            said = time.monotonic()
            while len(self.finals) + len(self.errors) < survivors and time.monotonic() < deadline:
                with contextlib.suppress(KeyboardInterrupt):
                    self._drain(0.05 if not self.settle.is_set() else 0.2)
                if len(self.quiet) >= survivors or time.monotonic() >= quiet_by:
                    self.settle.set()  # every survivor stopped publishing: all settle now
                if time.monotonic() - said >= 5:
                    said = time.monotonic()
                    done = len(self.finals) + len(self.errors)
                    self._phase(f"still waiting: {done} of {survivors} worker report(s) in")
            missing = survivors - len(self.finals) - len(self.errors)
            self._phase(
                "every worker reported; ending the worker processes"
                if missing <= 0
                else f"{missing} worker(s) did not report in time; ending them"
            )
            for process in self.processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
        if self.errors and not self.finals:
            raise RuntimeError(self.errors[0])
        return self._result(time.monotonic() - started, interrupted)

    def _phase(self, text: str) -> None:
        if self.on_phase is not None:
            self.on_phase(text)

    def _crash(self, count: int) -> None:
        for worker_id in sorted(self.pids)[:count]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pids[worker_id], signal.SIGKILL)
            self.crashed.append(worker_id)

    def _snapshot(self, elapsed: float) -> Progress:
        alive = {w: v for w, v in self.progress.items() if w not in self.crashed}
        return Progress(
            elapsed=elapsed,
            workers_alive=len(alive),
            players=sum(v[2] for v in alive.values()),
            published=sum(v[0] for v in alive.values()),
            delivered=sum(v[1] for v in alive.values()),
        )

    def _result(self, elapsed: float, interrupted: bool) -> SimResult:
        survivors = sorted(self.finals)
        received = {w: set(self.finals[w]["received"]) for w in survivors}
        published: dict[str, int] = {"location": 0, "personal": 0}
        expected = got = 0
        for publisher in survivors:
            for msg_id, family, _sent in self.finals[publisher]["published"]:
                published[family] = published.get(family, 0) + 1
                if family == "personal":
                    expected += 1
                    got += msg_id in received[publisher]
                else:
                    expected += len(survivors)
                    got += sum(msg_id in received[w] for w in survivors)
        latencies = [x for w in survivors for x in self.finals[w]["latencies"]]
        stats = [self.finals[w]["stats"] for w in survivors]
        failover = None
        if self.victim is not None and self.killed_at is not None:
            failover = failover_report(
                self.victim,
                play_started=self.play_started,
                killed_at=self.killed_at,
                gaps=[tuple(g) for s in stats for g in s["gaps"]],
                error_times=[t for w in survivors for t in self.finals[w]["error_times"]],
                lost_sent_at=self._lost_sent_at(survivors, received),
                workers_resubscribed=sum(1 for s in stats if s["gaps"]),
            )
        return SimResult(
            workers=self.config.workers,
            players=self.config.players,
            duration_s=round(elapsed, 2),
            crashed=list(self.crashed),
            published=published,
            expected=expected,
            received=got,
            lost=expected - got,
            duplicated=sum(s["duplicates"] for s in stats),
            delivered_to_inboxes=sum(s["delivered"] for s in stats),
            latency_ms=percentiles(latencies),
            moves=sum(self.finals[w]["moves"] for w in survivors),
            fights=sum(self.finals[w]["fights"] for w in survivors),
            reconnects=sum(self.finals[w]["reconnects"] for w in survivors),
            worker_reconnects=sum(s["reconnects"] for s in stats),
            spawn_runs=sum(s["spawn_runs"] for s in stats),
            interrupted=interrupted,
            pubsub_mode=self.config.target.pubsub_mode,
            failover=failover,
        )

    def _lost_sent_at(self, survivors: list[str], received: dict[str, set[str]]) -> list[float]:
        """The send time of every (message, worker) that should have arrived and did not."""
        out: list[float] = []
        for publisher in survivors:
            for msg_id, family, sent in self.finals[publisher]["published"]:
                targets = [publisher] if family == "personal" else survivors
                out += [sent for w in targets if msg_id not in received[w]]
        return out


async def leftovers(target: RedisTarget) -> dict[str, int]:
    """Sessions, presence members, connections, worker metas and locks still in Redis."""
    async with open_redis(target) as r:
        presence = sorted(await collect_keys(r, keys.PRESENCE_PATTERN))
        sizes = await bulk(r, [("SCARD", key) for key in presence], raise_on_error=False)
        members = sum(n for n in sizes if isinstance(n, int))
        return {
            "sessions": len(await collect_keys(r, keys.SESSION_PATTERN)),
            "presence_members": members,
            "worker_connections": len(await collect_keys(r, keys.WORKER_CONNECTIONS_PATTERN)),
            "worker_metas": len(await collect_keys(r, keys.WORKER_META_PATTERN)),
            "locks": len(await collect_keys(r, keys.LOCK_PATTERN)),
        }


def run_simulation(
    config: SimConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> SimResult:
    """Run the simulation; ``on_phase`` is told what the shutdown is doing, step by step."""
    before = asyncio.run(publish_counts(config.target))
    result = Simulation(config, on_progress=on_progress, on_phase=on_phase).run()
    if on_phase is not None:
        on_phase("checking what is left in Redis (sessions, presence, connections, locks)")
    result.publish_by_node = publish_deltas(before, asyncio.run(publish_counts(config.target)))
    if result.failover is not None:
        result.failover.new_primary = asyncio.run(slot_owner(config.target, result.failover.slot))
    result.leftover = asyncio.run(leftovers(config.target))
    return result
