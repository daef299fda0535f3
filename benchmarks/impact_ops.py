"""The operations of benchmarks/impact.py: how each is run (a CLI command as an operator types
it, or the dashboard's polls in-process) and the tier state it starts from (``Op.setup``)."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from worldgen import write_yaml

from echoes_ops.client.bulk import bulk
from echoes_ops.config import Settings
from echoes_ops.contract import keys

BIN = Path(sys.executable).parent


def cli(*args: str) -> list[str]:
    return [str(BIN / "echoes-ops"), *args]


def run_cli(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` (behind ``ECHOES_IMPACT_WRAP``, an experiment's command prefix such as
    ``nice -n 19`` or ``taskset -c 1``); return the CPU seconds it used."""
    wrap = env.get("ECHOES_IMPACT_WRAP", "").split()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*wrap, *cmd], env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # doctor exits 1 on a failed check: still measured
        raise SystemExit(f"{' '.join(cmd[1:])} exited {done.returncode}: {done.stderr.strip()}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def dashboard_polls(url: str, cycles: int) -> float:
    """The dashboard's polls (snapshot, tier census, drift), ``cycles`` times, through the
    source the dashboard's poller calls; the CPU seconds this thread used."""
    from echoes_ops.tui.source import RedisSource

    async def go() -> None:
        source = RedisSource(Settings.from_dsn(url), read_only=True)
        try:
            await source.open()
            for _ in range(cycles):
                await source.snapshot()
                await source.tier()
                await source.drift()
        finally:
            await source.close()

    started = time.thread_time()
    asyncio.run(go())
    return time.thread_time() - started


def routine_change(world: Any, folder: Path, entries: int) -> None:
    """The same world with ``entries`` items renamed, written to ``folder``."""
    items = dict(world.items)
    for item_id in list(items)[:entries]:
        items[item_id] = dataclasses.replace(items[item_id], name=items[item_id].name + " (mk2)")
    write_yaml(dataclasses.replace(world, items=items), folder)


@dataclasses.dataclass
class Op:
    """An operation: ``run`` (in a thread, returns its CPU seconds) inside the window, and
    ``setup`` (on the benchmark's own client, outside any window) bringing the tier to the
    state the operation starts from, so that every repetition (``--repeat``) and every
    ``--wrap`` row does the same work."""

    label: str
    run: Callable[[], float]
    setup: Callable[[Any], Awaitable[None]] | None = None
    model: str = "plain"  # impact.py --realtime: the scheduling model of this window


async def wipe_static(r: Any) -> None:
    """No static data at all (the version record, the index, every static key): the next
    preload is a first load."""
    from echoes_ops.operations.static_data import find_static_keys

    found = sorted(k for family in (await find_static_keys(r)).values() for k in family)
    found += [keys.GAMEDATA_VERSION_KEY, keys.LOCATION_INDEX_KEY]
    await bulk(r, [("UNLINK", *found[i : i + 500]) for i in range(0, len(found), 500)])


def unwarm(characters: int) -> Callable[[Any], Awaitable[None]]:
    """Warmup's characters (ids 1..N) gone from Redis: the next warmup writes them all."""

    async def setup(r: Any) -> None:
        names = [
            k
            for n in range(1, characters + 1)
            for k in (keys.session_key(n), keys.inventory_key(n))
        ]
        await bulk(r, [("UNLINK", *names[i : i + 500]) for i in range(0, len(names), 500)])

    return setup


def loaded(world: Path, env: dict[str, str]) -> Callable[[Any], Awaitable[None]]:
    """``world`` preloaded (nothing done when it already is)."""

    async def setup(_: Any) -> None:
        await asyncio.to_thread(run_cli, cli("preload", "--gamedata", str(world), "-y"), env)

    return setup
