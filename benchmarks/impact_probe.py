"""The probe and the server's view for benchmarks/impact.py: game traffic at a fixed rate
through the reference runtime, and what the server and the scheduler say about each
operation (SLOWLOG, redis-server's CPU, run-queue waits)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract.session import Session

PROBE_WORKER = "impact-probe"
PROBE_PLAYERS = 50
PROBE_FIRST_ID = 9_000_001
PROBE_LOCATIONS = ("probe_a", "probe_b", "probe_c")
SLOWLOG_LEN = 1_000_000  # threshold 0 logs every command, scripts' inner calls included
BUDGET_MS = 1.0


# -- the probe -----------------------------------------------------------------------------


def probe_process(url: str, rate: float, ready: Any, stop: Any, out: Any) -> None:
    """Play game traffic at ``rate`` calls/s until ``stop``; send [(wall time, ms from due,
    ms of the call itself)] to ``out``."""
    samples = asyncio.run(_probe(url, rate, ready, stop))
    out.send(samples)


async def _probe(url: str, rate: float, ready: Any, stop: Any) -> list[tuple[float, float, float]]:
    from echoes_ops.runtime.tier import Tier

    target = Settings.from_dsn(url).redis_target()
    async with open_redis(target, client_name=PROBE_WORKER) as r:
        tier = Tier(r, PROBE_WORKER)
        where = {}
        for n in range(PROBE_PLAYERS):
            cid = PROBE_FIRST_ID + n
            loc = PROBE_LOCATIONS[n % len(PROBE_LOCATIONS)]
            await tier.connect_player(
                Session(character_id=cid, location_id=loc, username=f"probe{n}", hp=100)
            )
            where[cid] = loc
        ready.set()
        samples: list[tuple[float, float, float]] = []
        interval = 1.0 / rate
        due = time.perf_counter()
        n = 0
        while not stop.is_set():
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)
            cid = PROBE_FIRST_ID + n % PROBE_PLAYERS
            kind = n % 3
            began = time.perf_counter()
            if kind == 0:
                await tier.touch_session(cid, {"hp": 100 - n % 7})
            elif kind == 1:
                here = where[cid]
                there = PROBE_LOCATIONS[(PROBE_LOCATIONS.index(here) + 1) % len(PROBE_LOCATIONS)]
                await tier.move(cid, here, there)
                where[cid] = there
            else:
                await tier.publish_location(where[cid], {"text": "probe", "n": n})
            ended = time.perf_counter()
            samples.append((time.time(), (ended - due) * 1000, (ended - began) * 1000))
            n += 1
            due += interval
        for cid, loc in where.items():
            await tier.disconnect_player(cid, loc)
        return samples


# -- the server's view ---------------------------------------------------------------------


async def slowlog_reset(r: Any) -> None:
    await r.slowlog_reset()


async def longest_commands(r: Any, exclude: set[str]) -> tuple[float, str, int, int]:
    """(longest ms, its command, how many over the budget, how many) of the commands the
    SLOWLOG holds, leaving out clients named in ``exclude`` (and the SLOWLOG reads)."""
    entries = await r.execute_command("SLOWLOG", "GET", SLOWLOG_LEN)
    longest, name, over, count = 0.0, "-", 0, 0
    for entry in entries:
        # [id, time, micros, [args], peer, client name]
        args = entry[3]
        command = str(args[0] if args else "?").upper()
        client = str(entry[5]) if len(entry) > 5 else ""
        if command == "SLOWLOG" or client in exclude:
            continue
        count += 1
        ms = entry[2] / 1000
        over += ms > BUDGET_MS
        if ms > longest:
            longest, name = ms, command
    return longest, name, over, count


def runqueue_waits(pids: tuple[int, ...]) -> tuple[float, ...]:
    """Seconds each process has spent runnable but waiting for a CPU (Linux schedstat)."""
    waits = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/schedstat").read_text().split()
            waits.append(int(fields[1]) / 1e9)
        except (OSError, IndexError, ValueError):
            waits.append(float("nan"))
    return tuple(waits)


async def server_cpu(r: Any) -> float:
    """redis-server's main-thread CPU seconds so far (user + system)."""
    info = await r.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
