"""``preload --online`` beside the game (issue #16 item 2): its write steps go one call at a
time, paced like every stepped walk (client/pacing.PacedLine), with one pacing for the
whole run; on a quiet tier at full speed. (A round of 16 calls used to be written at once
and the next round sent as soon as it was done: back to back beside the game.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from benchmarks.worldgen import make_world
from echoes_ops.client import pacing
from echoes_ops.client.pacing import Pacer
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.cache import cache_status
from echoes_ops.operations.preload import preload
from echoes_ops.operations.preload_online import INDEX_BATCH
from tests.test_pacing_plain import Recording, other_traffic, record_pacers


@pytest.fixture(scope="module")
def big_world() -> GameData:
    return make_world(6000, 600)


@pytest.fixture(scope="module")
def long_world() -> GameData:
    """Long enough that the quiet run's writer outlasts its second look (50 ms after the
    first) on a machine a few times faster than this one: big_world's run reached it after
    31 of its 110 steps here."""
    return make_world(15000, 1500)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Pacer]:
    """Every pacer made while the test runs, each a :class:`Recording`."""
    monkeypatch.setattr(pacing, "Pacer", Recording)
    return record_pacers(monkeypatch)


def _writer(pacers: list[Pacer]) -> Recording:
    """The pacer that paced the most steps: the writer's (the run's other walks, the diff's
    and the verify's reads, take far fewer steps)."""
    writer = max(pacers, key=lambda p: p.asked if isinstance(p, Recording) else -1)
    assert isinstance(writer, Recording)
    return writer


async def test_online_steps_beside_traffic_are_paced_one_call_at_a_time(
    r: Redis, redis_url: str, big_world: GameData, recorded: list[Pacer]
) -> None:
    await preload(r, big_world, operator="test")  # a first load: --force rewrites it all
    recorded.clear()
    async with other_traffic(lambda: Redis.from_url(redis_url)):
        result = await preload(r, big_world, operator="test", online=True, force=True)
    assert result.online is not None
    steps = result.online.steps
    assert steps > 50
    writer = _writer(recorded)
    assert writer.busy
    # one pacing for the whole run, a gap asked after every call but the run's last
    assert writer.asked >= steps - 1
    assert writer.paced >= writer.asked - 2  # every call held back (but around a look)
    assert writer.slept > 0
    assert (await cache_status(r, big_world)).in_sync


async def test_online_steps_on_a_quiet_tier_run_at_full_speed(
    r: Redis, long_world: GameData, recorded: list[Pacer]
) -> None:
    await preload(r, long_world, operator="test")
    recorded.clear()
    result = await preload(r, long_world, operator="test", online=True, force=True)
    assert result.online is not None
    writer = _writer(recorded)
    assert writer.asked >= result.online.steps - 1
    assert not writer.busy
    # paced only until the second look found the server quiet, never after
    assert writer.quiet_look == 2  # the first look that can judge
    assert writer.paced == writer.quiet_at


async def test_location_index_batches_beside_traffic_are_paced_steps(
    r: Redis, redis_url: str, big_world: GameData, recorded: list[Pacer]
) -> None:
    """A world that adds thousands of locations adds them to the location index in SADD
    batches: one a step, paced by the run's pacing like the script's steps, never one
    round written back to back."""
    await preload(r, big_world, operator="test")
    grown = make_world(6000, 3000)  # the same items, 2,400 more locations
    added = len(set(grown.locations) - set(big_world.locations))
    index_calls = -(-added // INDEX_BATCH)
    assert index_calls >= 8
    recorded.clear()
    async with other_traffic(lambda: Redis.from_url(redis_url)):
        result = await preload(r, grown, operator="test", online=True)
    assert result.online is not None
    # the writer's pacing saw a gap asked after each script step and each index batch
    # (the verify pass's, the diff's reads', have counts of their own, far from it)
    want = result.online.steps + index_calls
    asked = [p.asked for p in recorded if isinstance(p, Recording)]
    writer = min(asked, key=lambda n: abs(n - want))
    assert abs(writer - want) <= 2, (asked, want)
    assert (await cache_status(r, grown)).in_sync
