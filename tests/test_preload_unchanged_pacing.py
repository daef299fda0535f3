"""The unchanged check of ``preload`` beside the game (issue #16 item 2):
``preload_send.all_present`` reads every static key with EXISTS of ``EXISTS_BATCH`` keys; on
one server those calls go ``EXISTS_STEP`` at a time, one step in flight, paced like every
stepped walk (client/pacing.PacedLine). It used to send them all as one pipeline (88 calls
for 22,000 keys), which the server ran back to back beside the game."""

from __future__ import annotations

import math
from typing import Any

import pytest
from redis.asyncio import Redis

from benchmarks.worldgen import make_world
from echoes_ops.client import pacing
from echoes_ops.client.connect import make_client
from echoes_ops.client.pacing import Pacer
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations import preload_send
from echoes_ops.operations.cache import cache_status
from echoes_ops.operations.preload import preload
from echoes_ops.operations.preload_send import EXISTS_BATCH, EXISTS_STEP
from echoes_ops.operations.static_data import encode_gamedata
from tests.test_pacing_plain import Recording, other_traffic, record_pacers


@pytest.fixture(scope="module")
def world() -> GameData:
    return make_world(6000, 600)


@pytest.fixture(scope="module")
def static_keys(world: GameData) -> list[str]:
    return [key for mappings in encode_gamedata(world).values() for key in mappings]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Pacer]:
    """Every pacer made while the test runs, each a :class:`Recording`."""
    monkeypatch.setattr(pacing, "Pacer", Recording)
    return record_pacers(monkeypatch)


def _steps(static_keys: list[str]) -> int:
    calls = math.ceil((len(static_keys) + 1) / EXISTS_BATCH)  # and the location index
    return math.ceil(calls / EXISTS_STEP)


async def test_unchanged_check_beside_traffic_is_stepped_and_paced(
    r: Redis,
    redis_url: str,
    world: GameData,
    static_keys: list[str],
    recorded: list[Pacer],
) -> None:
    await preload(r, world, operator="test")
    recorded.clear()
    async with other_traffic(lambda: Redis.from_url(redis_url)):
        result = await preload(r, world, operator="test")
    assert result.skipped
    steps = _steps(static_keys)
    assert steps > 10
    # one pacing for the check, a gap asked after each step but the last
    assert len(recorded) == 1
    check = recorded[0]
    assert isinstance(check, Recording)
    assert check.busy
    assert check.asked == steps - 1
    assert check.paced >= check.asked - 1  # every step held back (but one, around a look)
    assert check.slept > 0


async def test_unchanged_check_finds_a_gap_in_any_step(
    r: Redis, world: GameData, static_keys: list[str]
) -> None:
    await preload(r, world, operator="test")
    assert await preload_send.all_present(r, static_keys)
    for gone in (static_keys[0], static_keys[len(static_keys) // 2], static_keys[-1]):
        value = await r.dump(gone)
        assert value is not None
        await r.delete(gone)
        assert not await preload_send.all_present(r, static_keys)
        await r.restore(gone, 0, value)
    assert await preload_send.all_present(r, static_keys)
    again = await preload(r, world, operator="test")
    assert again.skipped


def _top(pacers: list[Pacer], n: int) -> list[Recording]:
    """The ``n`` pacers that paced the most steps."""
    found = sorted(
        (p for p in pacers if isinstance(p, Recording)), key=lambda p: p.asked, reverse=True
    )
    return found[:n]


async def test_cluster_preload_writes_and_verify_are_paced_per_node(
    cluster_r: Any, cluster_settings: Settings, world: GameData, recorded: list[Pacer]
) -> None:
    """On a cluster preload writes in per-slot steps and re-reads what it wrote: each
    primary's share in steps, one in flight, paced by one pacer per node for the whole run
    (writer) and for the whole verify pass. They went as one unpaced pipeline per round of
    up to 512 calls. The unchanged check is stepped and paced per node too."""
    async with other_traffic(lambda: make_client(cluster_settings.redis_target())):
        result = await preload(cluster_r, world, operator="test")
    assert result.online is not None
    assert result.online.verified_keys > 0
    writer = _top(recorded, 3)
    assert len(writer) == 3
    assert all(p.busy for p in writer)
    steps = sum(p.asked for p in writer)
    assert steps > 30
    assert sum(p.paced for p in writer) >= steps - 6  # held back (but around a look)
    assert all(p.slept > 0 for p in writer)
    assert (await cache_status(cluster_r, world)).in_sync

    recorded.clear()
    async with other_traffic(lambda: make_client(cluster_settings.redis_target())):
        again = await preload(cluster_r, world, operator="test")
    assert again.skipped
    check = [p for p in recorded if isinstance(p, Recording) and p.asked]
    assert len(check) == 3  # one per primary
    assert all(p.busy and p.paced >= p.asked - 1 for p in check)


async def test_unchanged_check_on_a_quiet_tier_sends_the_rest_as_one_pipeline(
    r: Redis, recorded: list[Pacer]
) -> None:
    """Stepped until a look finds the tier quiet, then the calls left go as one pipeline
    (``burst``): one step in flight at a time cost an unchanged preload of 220,000 keys
    about 90 ms of round trips on a quiet tier. Its second look comes after
    ``QUICK_LOOK``, not ``FIRST_LOOK``: the paced stretch before it cost such a preload
    another 50-60 ms (reviewed). A key missing in the pipelined part is still found."""
    names = [f"static:test:{n}" for n in range(120_000)]
    for start in range(0, len(names), 10_000):
        await r.mset({name: "1" for name in names[start : start + 10_000]})
    await r.set(keys.LOCATION_INDEX_KEY, "1")
    assert await preload_send.all_present(r, names)
    steps = _steps(names)
    check = recorded[-1]
    assert isinstance(check, Recording)
    assert not check.busy
    assert check.quiet_at is not None
    # looked again soon after the first look: the paced stretch before the pipeline is short
    assert check.first_look == pacing.QUICK_LOOK < pacing.FIRST_LOOK
    # the gap was asked only for the steps before the tier was seen quiet
    assert 0 < check.asked < steps // 2, (check.asked, steps)

    recorded.clear()
    await r.delete(names[-3])
    assert not await preload_send.all_present(r, names)
    assert recorded[-1].asked < steps // 2  # the gap was in the pipelined part
