"""Long walk steps: the keys' cost, or something passing? Replay each long step's exact call.

Run (root, for SCHED_RR):  .venv/bin/python benchmarks/long_steps.py [--sessions 200000]

Builds ``inspect_scale.populate``'s tier (SESSIONS sessions in KEYS keys) plus an inventory
list for half the players, runs redis-server at SCHED_RR (so that no step is long because
the server waited for a CPU), and runs ``sessions list --stale`` and ``reconcile`` (dry run)
twice each while a writer moves players between locations (session HSET, SREM/SADD,
PUBLISH) every ``--every-ms``. Every EVALSHA of ours that SLOWLOG saw take over 1 ms is then
sent again, three times, with the same arguments (a SCAN step's cursor and COUNT make it
the same keys): if the replays are short, the long step was not the cost of its keys. The
writer stays on during the replays. (docs/benchmarks.md, the run of record's diagnostic.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspect_scale import populate, private_server, tier_arguments

from benchmarks.machine import load_average
from echoes_ops.client.bulk import bulk
from echoes_ops.contract import keys
from echoes_ops.operations.reconcile import reconcile
from echoes_ops.operations.sessions import list_sessions

LONG_US = 1000


async def inventories(r, players: int) -> None:
    commands = []
    for cid in range(1, players + 1):
        items = [f'{{"item_id":"it{j}","quantity":{j}}}' for j in range(5)]
        commands += [("RPUSH", keys.inventory_key(cid), *items)]
        commands += [("EXPIRE", keys.inventory_key(cid), "3600")]
        if len(commands) >= 20_000:
            await bulk(r, commands)
            commands = []
    await bulk(r, commands)


async def mover(r, sessions: int, locations: int, every: float, stop: asyncio.Event) -> None:
    """A game's worker: one player moved a call, with its session and presence sets."""
    n = 0
    while not stop.is_set():
        cid = n % sessions + 1
        old, new = f"loc_{n % locations}", f"loc_{(n + 1) % locations}"
        pipe = r.pipeline(transaction=False)
        pipe.hset(
            keys.session_key(cid), mapping={"last_heartbeat": time.time(), "location_id": new}
        )
        pipe.srem(keys.presence_key(old), str(cid))
        pipe.sadd(keys.presence_key(new), str(cid))
        pipe.publish("bench:moves", "x" * 100)
        await pipe.execute()
        n += 1
        await asyncio.sleep(every)


async def replay(r, words: list[bytes]) -> list[int]:
    """The call sent again three times; each one's SLOWLOG duration (us)."""
    await r.config_set("slowlog-log-slower-than", 0)
    await r.slowlog_reset()
    for _ in range(3):
        await r.execute_command(*words)
    entries = await r.slowlog_get(1000)
    await r.config_set("slowlog-log-slower-than", LONG_US)
    own = [e for e in entries if e["command"].split()[0].upper() == b"EVALSHA"]
    return [e["duration"] for e in sorted(own, key=lambda e: e["id"])]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tier_arguments(parser)
    parser.add_argument("--every-ms", type=float, default=3.3)
    parser.add_argument("--show", type=int, default=8, help="long steps replayed per walk")
    args = parser.parse_args()
    print(f"load average {load_average()} ({os.cpu_count()} CPUs)")
    async with private_server() as r:
        await populate(r, args.sessions, args.keys, args.locations)
        await inventories(r, args.sessions // 2)
        pid = int((await r.info("server"))["process_id"])
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(10))
        print(f"{await r.dbsize():,} keys; redis-server at SCHED_RR")
        stop = asyncio.Event()
        every = args.every_ms / 1000
        writer = asyncio.create_task(mover(r, args.sessions, args.locations, every, stop))
        await r.config_set("slowlog-log-slower-than", LONG_US)
        await r.config_set("slowlog-max-len", 10_000)
        walks = [
            ("sessions list --stale", lambda: list_sessions(r, stale_after=300.0)),
            ("reconcile (dry run)", lambda: reconcile(r)),
        ]
        try:
            for label, walk in walks * 2:
                await r.slowlog_reset()
                started = time.perf_counter()
                await walk()
                wall = time.perf_counter() - started
                entries = await r.slowlog_get(10_000)
                long = [e for e in entries if e["command"].split()[0].upper() == b"EVALSHA"]
                print(f"{label}: {wall:.2f} s, {len(long)} EVALSHA over 1 ms")
                for entry in sorted(long, key=lambda e: -e["duration"])[: args.show]:
                    words = entry["command"].split()
                    if any(w.startswith(b"...") for w in words) or words[2] != b"0":
                        continue  # arguments cut by SLOWLOG, or keys: not replayable
                    again = await replay(r, words)
                    print(f"  {entry['duration']:>5} us, replayed: {again} us")
        finally:
            stop.set()
            await writer
        print(f"load average {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
