"""Pacing of the plain walks (issue #16): the SCAN walks (client/scan.scan_node, scan_keys,
client/rawscan.scan_raw) and the stepped reads (client/bulk.bulk with ``stepped=True``) are
paced like the Lua walks (client/pacing.PacedLine): beside other clients' traffic they leave
the server idle between steps, on a quiet server they run at full speed, and a refused
INFO counts as others there. On both topologies (each node of a cluster paced on its own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from echoes_ops.client import pacing
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis, make_client
from echoes_ops.client.pacing import Pacer
from echoes_ops.client.rawscan import scan_raw
from echoes_ops.client.scan import collect_keys, scan_node
from echoes_ops.config import Settings

KEYS = 3000


@pytest.fixture
def keyspace(sync_r: redis.Redis) -> int:
    pipe = sync_r.pipeline(transaction=False)
    for n in range(KEYS):
        pipe.set(f"filler:{n}", "x")
    pipe.execute()
    return KEYS


@asynccontextmanager
async def other_traffic(make: Callable[[], Any]) -> AsyncIterator[None]:
    """Another client writing without a pause (on every node: the keys spread over slots)
    until the block ends; entered once its first write is done."""
    stop, under_way = asyncio.Event(), asyncio.Event()

    async def game() -> None:
        other = make()
        try:
            n = 0
            while not stop.is_set():
                await other.set(f"game:noise:{n % 64}", "x" * 200)
                n += 1
                under_way.set()
        finally:
            await other.aclose()

    noise = asyncio.create_task(game())
    try:
        await asyncio.wait_for(under_way.wait(), 10)
        yield
    finally:
        stop.set()
        await noise


class Recording(Pacer):
    """A pacer that notes how many steps were paced when it first found the server quiet,
    and at which of its looks, and the round trips it was told of."""

    quiet_at: int | None = None
    quiet_look: int | None = None  # the look that first found the server quiet (1 = first)
    looks: int = 0
    held: float = 0.0
    asked: int = 0  # steps after which the walk asked for its gap (all but the last)

    def looked(self, now: float, reply: object, ours: int) -> None:
        super().looked(now, reply, ours)
        self.looks += 1
        if not self.busy and self.quiet_at is None:
            self.quiet_at = self.paced
            self.quiet_look = self.looks

    def gap(self, seconds: float) -> float:
        self.held += seconds
        self.asked += 1
        return super().gap(seconds)


@asynccontextmanager
async def without_info(sync_r: redis.Redis, redis_url: str) -> AsyncIterator[Redis]:
    """A client of a user refused INFO (an ACL without it), removed again afterwards."""
    sync_r.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info")
    try:
        url = redis_url.replace("redis://", "redis://noinfo:pw@", 1)
        limited = Redis.from_url(url, decode_responses=True)
        try:
            yield limited
        finally:
            await limited.aclose()
    finally:
        sync_r.execute_command("ACL", "DELUSER", "noinfo")


def record_pacers(monkeypatch: pytest.MonkeyPatch) -> list[Pacer]:
    """The list every pacer made from now on (while the test runs) is appended to."""
    pacers: list[Pacer] = []
    real_init = Pacer.__init__

    def recorded(self: Pacer, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        pacers.append(self)

    monkeypatch.setattr(Pacer, "__init__", recorded)
    return pacers


async def scan_walk(r: Redis, pacer: Pacer) -> int:
    seen: set[str] = set()
    async for batch in scan_node(r, "filler:*", count=20, pacer=pacer):
        seen.update(batch)
    return len(seen)


async def raw_walk(r: Redis, pacer: Pacer) -> int:
    seen: set[bytes] = set()
    async for batch in scan_raw(r, match="filler:*", count=20, pacer=pacer):
        seen.update(batch)
    return len(seen)


async def read_walk(r: Redis, pacer: Pacer) -> int:
    replies = await bulk(
        r, [("GET", f"filler:{n}") for n in range(KEYS)], chunk=20, stepped=True, pacer=pacer
    )
    return sum(1 for reply in replies if reply is not None)


WALKS: dict[str, Callable[[Redis, Pacer], Awaitable[int]]] = {
    "scan_node": scan_walk,
    "scan_raw": raw_walk,
    "stepped reads": read_walk,
}


@pytest.mark.parametrize("kind", list(WALKS))
async def test_a_plain_walk_beside_other_traffic_leaves_the_server_idle(
    kind: str, r: Redis, redis_url: str, keyspace: int
) -> None:
    """While another client writes, the walk holds its steps back: the server is left idle
    for the gap after every step, and the walk takes at most its duty cycle of the time."""
    pacer = Recording(duty=0.25)
    async with other_traffic(lambda: Redis.from_url(redis_url)):
        started = time.perf_counter()
        found = await WALKS[kind](r, pacer)
        wall = time.perf_counter() - started
    assert found == keyspace
    assert pacer.asked >= keyspace // 25  # a SCAN step may visit a few more than COUNT
    assert pacer.busy
    assert pacer.paced >= pacer.asked - 1  # every step held back (but one, around a look)
    assert pacer.slept > 0
    assert pacer.held <= 0.25 * wall + 0.002  # the walk's share (round trips: an upper bound)


@pytest.mark.parametrize("kind", list(WALKS))
async def test_a_plain_walk_on_a_quiet_server_runs_at_full_speed(
    kind: str, r: Redis, keyspace: int
) -> None:
    pacer = Recording(duty=0.25)
    assert await WALKS[kind](r, pacer) == keyspace
    assert not pacer.busy
    # paced only until a look found the server quiet (the second one), never after
    assert pacer.quiet_at is not None
    assert pacer.paced == pacer.quiet_at
    assert pacer.asked >= keyspace // 25
    assert pacer.paced < pacer.asked - 2


@pytest.mark.parametrize("kind", list(WALKS))
async def test_a_refused_info_counts_as_busy(
    kind: str, sync_r: redis.Redis, redis_url: str, keyspace: int
) -> None:
    """INFO refused (an ACL without it): the walk cannot tell whether others are there, so it
    goes on, paced, instead of failing or running flat out."""
    pacer = Recording(duty=0.5)
    async with without_info(sync_r, redis_url) as limited:
        assert await WALKS[kind](limited, pacer) == keyspace
    assert pacer.busy
    assert pacer.asked >= keyspace // 25
    assert pacer.paced == pacer.asked


async def _fill(r: AnyRedis, n: int) -> None:
    await bulk(r, [("SET", f"filler:{i}", "x") for i in range(n)])


# each node of a cluster walks long enough to look twice: a fast machine's paced SCAN steps
# took 0.35 ms, and 200 steps a node walk would just outlast the 50 ms before the second look
TIER_KEYS = 8 * KEYS


async def _both_walks(r: AnyRedis) -> None:
    assert len(await collect_keys(r, "filler:*", count=20)) == TIER_KEYS
    reads = [("GET", f"filler:{n}") for n in range(TIER_KEYS)]
    replies = await bulk(r, reads, chunk=20, stepped=True)
    assert all(reply is not None for reply in replies)


async def test_the_walks_of_a_client_from_settings_are_paced_on_both_topologies(
    tier_settings: Settings, tier_r: AnyRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the entry points the operations use (scan_keys, bulk), with the duty cycle of
    the client's settings: beside traffic the steps are held back on every server of the
    tier; on a quiet tier only until each walk's second look found it quiet."""
    monkeypatch.setattr(pacing, "Pacer", Recording)
    pacers = record_pacers(monkeypatch)
    await _fill(tier_r, TIER_KEYS)
    await _both_walks(tier_r)
    assert pacers
    assert all(p.duty == 0.5 for p in pacers)
    assert not any(p.busy for p in pacers)
    steps = 2 * TIER_KEYS // 25  # at least (a SCAN step may visit a few more than COUNT)
    # paced only for the first steps of each walk and node, until its second look (the first
    # that can judge, FIRST_LOOK after the first) found it quiet, never after. How many steps
    # that is depends on the machine's speed (243-537 of 960 on this one, cluster), so it is
    # not counted against the walk's length
    recordings = [p for p in pacers if isinstance(p, Recording)]
    assert len(recordings) == len(pacers)
    assert all(p.quiet_look == 2 and p.paced == p.quiet_at for p in recordings), [
        (p.quiet_look, p.quiet_at, p.paced) for p in recordings
    ]

    pacers.clear()
    async with other_traffic(lambda: make_client(tier_settings.redis_target())):
        await _both_walks(tier_r)
    assert all(p.busy for p in pacers)
    assert sum(p.paced for p in pacers) >= steps - 4 * len(pacers)
    assert sum(p.slept for p in pacers) > 0


async def test_a_step_is_timed_from_before_its_write() -> None:
    """Writing a step wakes the server, which may run the whole step before the write
    returns to a niced client on a busy host: the step's time starts before the write, or
    the step looks short and the next grows too big (impact.py: 320 SCANs over 1 ms)."""
    from echoes_ops.client.pacing import PacedLine

    entered: list[float] = []

    class SlowWrite:  # a connection whose write returns only once the step has run
        async def send_packed_command(self, payload: bytes, check_health: bool) -> None:
            entered.append(time.perf_counter())
            await asyncio.sleep(0.02)

    line = PacedLine(SlowWrite(), Pacer(duty=1.0))
    before = time.perf_counter()
    await line.write(b"*1\r\n$4\r\nPING\r\n")
    assert before <= line.sent <= entered[0]  # stamped before the write began
    assert await line.came() - line.sent >= 0.02
