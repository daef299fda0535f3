"""The unchanged check of ``preload`` beside the game (issue #16 item 2):
``preload_send.all_present`` reads every static key with EXISTS of ``EXISTS_BATCH`` keys; on
one server those calls go ``EXISTS_STEP`` at a time, one step in flight, paced like every
stepped walk (client/pacing.PacedLine). It used to send them all as one pipeline (88 calls
for 22,000 keys), which the server ran back to back beside the game."""

from __future__ import annotations

import math

import pytest
from redis.asyncio import Redis

from benchmarks.worldgen import make_world
from echoes_ops.client import pacing
from echoes_ops.client.pacing import Pacer
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations import preload_send
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
