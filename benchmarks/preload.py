"""Preload throughput: echoes-ops's atomic preload against the plan's approach.

Run:  .venv/bin/python benchmarks/preload.py [--items 20000] [--locations 2000] [--runs 5]

Both sides start from the same in-memory GameData and an empty database of one private
redis-server started here, and both include encoding the values. The plan's approach is its
``preload_game_data``: one HSET per key, each awaited before the next. Reports the median of
``--runs`` runs of each, keys/s and the ratio, plus how long the atomic swap held the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.worldgen import make_world
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.gamedata.models import GameData
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.preload import preload


async def plan_approach(r, data: GameData) -> None:
    """The plan's preload: per-field JSON/str encoding, one awaited HSET per key."""
    for loc in data.locations.values():
        record = loc.to_record()
        mapping = {
            k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in record.items()
        }
        await r.hset(f"location:{loc.id}:cache", mapping=mapping)
    for item in data.items.values():
        record = item.to_record()
        mapping = {
            k: json.dumps(v) if isinstance(v, dict | list | bool) else str(v)
            for k, v in record.items()
        }
        await r.hset(keys.item_def_key(item.id), mapping=mapping)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--locations", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = make_world(args.items, args.locations)
    total = args.items + args.locations
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            async with open_redis(Settings.from_dsn(server.url).redis_target()) as r:
                ours, plans, swaps, forced = [], [], [], []
                for _ in range(args.runs):
                    await r.flushall()
                    started = time.perf_counter()
                    await plan_approach(r, data)
                    plans.append(time.perf_counter() - started)
                    await r.flushall()
                    await r.config_resetstat()
                    started = time.perf_counter()
                    result = await preload(r, data, operator="bench")
                    ours.append(time.perf_counter() - started)

                    assert result.keys_written == total, result.keys_written
                    stats = await r.info("commandstats")
                    swaps.append(stats["cmdstat_exec"]["usec"] / 1000)
                    started = time.perf_counter()
                    await preload(r, data, operator="bench", force=True)
                    forced.append(time.perf_counter() - started)
                    assert await r.dbsize() == total + 2  # + version, location index
        finally:
            server.stop()
    plan_s, ours_s, forced_s = (statistics.median(x) for x in (plans, ours, forced))
    print(
        f"keys: {total:,} ({args.items:,} items, {args.locations:,} locations); "
        f"median of {args.runs} runs"
    )
    print(f"plan approach (awaited HSET per key): {plan_s:.3f} s  {total / plan_s:,.0f} keys/s")
    print(
        f"echoes-ops preload (empty Redis):     {ours_s:.3f} s  {total / ours_s:,.0f} keys/s  "
        f"ratio {plan_s / ours_s:.1f}x"
    )
    print(
        f"echoes-ops preload --force (reload):  {forced_s:.3f} s  {total / forced_s:,.0f} keys/s  "
        f"ratio {plan_s / forced_s:.1f}x"
    )
    print(
        f"the atomic EXEC held the server: median {statistics.median(swaps):.1f} ms, "
        f"max {max(swaps):.1f} ms (server-side, INFO commandstats)"
    )


if __name__ == "__main__":
    asyncio.run(main())
