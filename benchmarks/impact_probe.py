"""The probe and the server's view for benchmarks/impact.py: game traffic at a fixed rate
through the reference runtime, and what the server and the scheduler say about each
operation (SLOWLOG, redis-server's CPU, run-queue waits)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.impact_holds import Longest, entries, latency_maxima, longest_of_ours, reset_holds
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
    """A fresh SLOWLOG and fresh latency histograms (INFO latencystats: EXEC's hold)."""
    await r.slowlog_reset()
    await reset_holds(r)


async def longest_commands(r: Any, exclude: set[str]) -> Longest:
    """The longest command of the clients not named in ``exclude``, a transaction's whole
    EXEC included (benchmarks/impact_holds.py: SLOWLOG never lists EXEC)."""
    log = entries(await r.execute_command("SLOWLOG", "GET", SLOWLOG_LEN))
    stats = latency_maxima(await r.info("latencystats"))
    return longest_of_ours(log, stats, exclude)


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
