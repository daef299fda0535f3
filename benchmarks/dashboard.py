"""What the dashboard costs at scale: refresh time, the longest server command, UI stalls.

Run:  .venv/bin/python benchmarks/dashboard.py [--sessions 100000] [--locations 500]
          [--rate 1000] [--cycles 20] [--ui-seconds 10] [--source process|inline]
          [--rt-redis]      (TRACE_STALLS=1: print stalls over 50 ms, full collections)

Starts a private redis-server and fills it with SESSIONS sessions (fields as the game
writes them) spread over LOCATIONS locations (presence sets, static cache, the location
index preload writes), 8 workers (meta keys, connection hashes, a connected client named
after each) and a few locks. A separate process publishes ``location_update`` envelopes at
RATE msg/s on an absolute schedule for the whole run. Then, with SLOWLOG catching every
command slower than 100 us:

1. ``RedisSource.snapshot()`` (the fast poll, every refresh) CYCLES times: client time
   (median, p95, max) and the longest server-side command;
2. ``RedisSource.tier()`` (the census, every 10 s) and ``RedisSource.drift()`` (reconcile's
   detector, every 30 s) a few times each, the same figures;
3. the dashboard itself, headless at 160x48 with a 1 s refresh and the live tail on, for
   UI-SECONDS seconds while a probe on its event loop measures how late a 10 ms timer
   fires (the longest stall bounds how long a key press can wait to be handled) and a
   thread sends a key every 100 ms the way the terminal driver's input thread does: a tab
   key six times (a switch, as an operator would), else the shown tab's own key (handled,
   nothing to redraw), timing each from its sending to the start of its action.

``--rt-redis`` runs redis-server at SCHED_FIFO priority (needs CAP_SYS_NICE): no other
process can then preempt it, so SLOWLOG durations show a command's own work, not the
machine's scheduling (on a loaded 2-core machine a preempted command waits out another
task's time slice, ~2.5 ms). It goes back to normal scheduling before stage 3. The script
prints redis-server's involuntary context switches during stages 1-2 either way.

``--source process`` (the default, the only way ``echoes-ops dashboard`` runs) polls in the
dashboard's poller process; ``--source inline`` runs the same ``RedisSource`` on the
screen's own event loop, for comparison (the thread runner of issue #7's comparison was
removed with issue #19: the dashboard runs its source one way).

For each poll, ``cpu`` is this process's CPU time per run (the source runs here in stages
1-2) and the slowest server command is printed below the table. Every wait is bounded; the
script stops the publisher and redis-server on the way out.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ruff: noqa: E402

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.dashboard_ui import ProbeApp, report_ui, ui_stage
from benchmarks.machine import load_line
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.tui.process_source import ProcessSource
from echoes_ops.tui.source import RedisSource

SLOWLOG_US = 0  # every command: the budget is a p99 (1 ms) and a max (2 ms)
SLOWLOG_LEN = 200_000
WORKERS = 8


async def populate(r: Any, sessions: int, locations: int) -> None:
    rng = random.Random(7)
    now = time.time()
    locs = [f"loc_{i:03d}" for i in range(locations)]
    commands: list[tuple[Any, ...]] = [("SADD", keys.LOCATION_INDEX_KEY, *locs)]
    for loc in locs:
        commands.append(("HSET", keys.location_cache_key(loc), "id", loc, "name", loc.title()))
    commands.append(
        ("HSET", keys.GAMEDATA_VERSION_KEY, "content_hash", "bench", "loaded_at", f"{now:.3f}")
    )
    for w in range(WORKERS):
        wid = f"bench-w{w}"
        commands.append(
            (
                "HSET",
                keys.worker_meta_key(wid),
                "worker_id",
                wid,
                "mode",
                "redis",
                "heartbeat",
                f"{now:.3f}",
            )
        )
        commands.append(("EXPIRE", keys.worker_meta_key(wid), 3600))
    for cid in range(1, sessions + 1):
        loc = rng.choice(locs)
        wid = f"bench-w{cid % WORKERS}"
        beat = now - (rng.uniform(200, 900) if rng.random() < 0.02 else rng.uniform(0, 10))
        commands += [
            (
                "HSET",
                keys.session_key(cid),
                "worker_id",
                wid,
                "location_id",
                loc,
                "username",
                f"p{cid}",
                "hp",
                "90",
                "max_hp",
                "100",
                "stamina",
                "40",
                "max_stamina",
                "50",
                "level",
                "7",
                "xp",
                "1200",
                "websocket_connected",
                "true",
                "in_combat",
                "false",
                "last_movement_time",
                f"{beat:.3f}",
                "last_heartbeat",
                f"{beat:.3f}",
            ),
            ("EXPIRE", keys.session_key(cid), 1800),
            ("SADD", keys.presence_key(loc), str(cid)),
            ("HSET", keys.worker_connections_key(wid), str(cid), "connected"),
        ]
        if len(commands) >= 40_000:
            await bulk(r, commands)
            commands = []
    for name in ("spawn_manager", "warmup", "preload"):
        commands.append(("SET", keys.lock_key(name), f"bench-w0#{name}", "PX", 3_600_000))
    await bulk(r, commands)


def publisher(port: int, rate: float, seconds: float, locations: int, stop: Any) -> None:
    """Publish location_update envelopes at ``rate`` msg/s (absolute schedule)."""
    client = redis.Redis(host="127.0.0.1", port=port)
    rng = random.Random(3)
    start = time.monotonic()
    sent = 0
    while not stop.is_set():
        due = start + sent / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        if due - start > seconds:
            break
        loc = f"loc_{rng.randrange(locations):03d}"
        body = {
            "type": "location_update",
            "location_id": loc,
            "exclude_player_id": None,
            "payload": {"type": "player_moved", "data": {"message": f"p{sent} moves"}},
            "sent_at": time.time(),
        }
        client.publish(keys.location_channel(loc), json.dumps(body))
        sent += 1
    client.close()


SLOWEST: list[str] = []


async def measure(
    r: Any, runs: int, call: Callable[[], Awaitable[object]]
) -> tuple[list[float], float, list[int]]:
    """Client seconds of each run, CPU seconds per run, and the server time (us) of every
    command the runs sent (SLOWLOG at threshold 0; the publisher's PUBLISH left out)."""
    await r.slowlog_reset()
    samples = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu) / runs
    entries = await r.slowlog_get(SLOWLOG_LEN)
    ours = [e for e in entries if not _not_ours(e)]
    if ours:
        worst = max(ours, key=lambda e: e["duration"])
        command = worst["command"]
        text = command.decode() if isinstance(command, bytes) else str(command)
        SLOWEST.append(f"{worst['duration'] / 1000:.2f} ms {text[:70]}")
    else:
        SLOWEST.append("no command logged")
    return samples, cpu, [int(e["duration"]) for e in ours]


def _not_ours(entry: dict[str, Any]) -> bool:
    """The benchmark's own commands, the publisher's, and the commands a script ran (from
    no address: their time is part of the script's EVALSHA)."""
    if entry.get("client_address") in (b"?:0", "?:0"):
        return True
    command = entry["command"]
    text = command.decode() if isinstance(command, bytes) else str(command)
    return text.upper().startswith(("SLOWLOG", "CONFIG", "PUBLISH"))


def report(label: str, samples: list[float], cpu: float, durations: list[int]) -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    server = sorted(durations) or [0]
    p99 = server[int(0.99 * (len(server) - 1))] / 1000
    print(
        f"{label:<26}{statistics.median(ordered) * 1000:>9.1f}{p95 * 1000:>9.1f}"
        f"{ordered[-1] * 1000:>9.1f}{cpu * 1000:>9.1f}{len(durations):>8}{p99:>8.2f}"
        f"{server[-1] / 1000:>8.2f}{sum(1 for d in server if d > 1000):>7}"
        f"{sum(1 for d in server if d > 2000):>7}"
    )


def involuntary_switches(pid: int) -> int | None:
    """Times the kernel preempted ``pid``'s main thread (Linux), None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def poll_stages(r: Any, settings: Settings, args: argparse.Namespace, pid: int) -> None:
    """Stages 1-2: each poll's client time, CPU and longest server command."""
    preempted = involuntary_switches(pid)
    source = RedisSource(settings)
    await source.open()
    before = await r.info("commandstats")
    print(f"publisher: {args.rate:,.0f} msg/s; SLOWLOG threshold {SLOWLOG_US} us")
    print(f"{'':<26}{'client time, per run':>27}{'':>9}{'server time of its commands':>38}")
    print(
        f"{'poll':<26}{'median':>9}{'p95':>9}{'max':>9}{'cpu':>9}{'cmds':>8}{'p99':>8}"
        f"{'max':>8}{'>1 ms':>7}{'>2 ms':>7}"
    )
    report("snapshot (every refresh)", *await measure(r, args.cycles, source.snapshot))
    report("tier census (every 10 s)", *await measure(r, 3, source.tier))
    report("drift (every 30 s)", *await measure(r, 3, source.drift))
    after = await r.info("commandstats")
    publishes = after.get("cmdstat_publish", {}).get("calls", 0) - before.get(
        "cmdstat_publish", {}
    ).get("calls", 0)
    for label, slowest in zip(("snapshot", "tier", "drift"), SLOWEST, strict=True):
        print(f"  slowest {label} command: {slowest}")
    now_preempted = involuntary_switches(pid)
    if preempted is not None and now_preempted is not None:
        print(f"redis-server preempted {now_preempted - preempted:,} times meanwhile")
    if args.rt_redis:  # a real-time Redis would take the CPU from the screen
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
    print(f"(published meanwhile: {publishes:,} messages)")
    await source.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--locations", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--ui-seconds", type=float, default=10.0)
    parser.add_argument("--source", choices=("process", "inline"), default="process")
    parser.add_argument("--rt-redis", action="store_true", help="redis-server at SCHED_FIFO")
    parser.add_argument("--ui-only", action="store_true", help="skip the polls' stages 1-2")
    args = parser.parse_args()
    print(f"start: {load_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        stop = mp.get_context("spawn").Event()
        pub = None
        named: list[redis.Redis] = []
        try:
            settings = Settings.from_dsn(server.url)
            async with open_redis(settings.redis_target(), socket_timeout=120) as r:
                started = time.perf_counter()
                await populate(r, args.sessions, args.locations)
                print(
                    f"populated {await r.dbsize():,} keys in {time.perf_counter() - started:.1f} s"
                )
                for w in range(WORKERS):  # workers are alive while a client with their name is
                    client = redis.Redis(
                        host=server.host, port=server.port, client_name=f"bench-w{w}"
                    )
                    client.ping()
                    named.append(client)
                total = args.cycles + 6 * 30 + args.ui_seconds + 120
                pub = mp.get_context("spawn").Process(
                    target=publisher,
                    args=(server.port, args.rate, total, args.locations, stop),
                    daemon=True,
                )
                pub.start()
                await asyncio.sleep(1.0)
                await r.config_set("slowlog-log-slower-than", SLOWLOG_US)
                await r.config_set("slowlog-max-len", SLOWLOG_LEN)
                pid = int((await r.info("server"))["process_id"])
                if args.rt_redis:
                    os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(50))
                    print("redis-server runs at SCHED_FIFO 50")
                if not args.ui_only:
                    await poll_stages(r, settings, args, pid)
                options = json.loads(os.environ.get("UI_OPTIONS", "{}"))
                chosen = (
                    RedisSource(settings) if args.source == "inline" else ProcessSource(settings)
                )
                app = ProbeApp(chosen, refresh=1.0, **options)
                report_ui(await ui_stage(app, args.ui_seconds), args.source)
                print(f"end: {load_line()}")
        finally:
            stop.set()
            if pub is not None:
                pub.join(timeout=5)
                if pub.is_alive():
                    pub.terminate()
            for client in named:
                client.close()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
