"""Pacing of the single-server steps (issue #16 item 2): client/bulk.StepConnection, which
warmup writes its script calls through on one server, is paced like every stepped walk
(client/pacing.PacedLine): beside other clients' traffic it leaves the server idle between
steps, on a quiet server it runs at full speed, and warmup's steps keep the duty cycle of
the client's settings."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from echoes_ops.client import pacing
from echoes_ops.client.bulk import StepConnection
from echoes_ops.client.connect import make_client, open_redis
from echoes_ops.client.pacing import Pacer
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.local.demo import seed_demo
from echoes_ops.operations.warmup import warmup
from tests.test_pacing_plain import Recording, other_traffic, record_pacers, without_info
from tests.test_warmup_budget import PLAYERS
from tests.warmup_helpers import DATA

STEPS = 300
CHARACTERS = 3000
# the settings test's quiet run must outlast its pacer's second look, 50 ms after the first:
# 3,000 characters took 82-114 ms here (a machine 2x faster would have ended it first)
SETTINGS_RUN = 8000


async def _steps(r: Redis, pacer: Pacer, steps: int = STEPS) -> list[Any]:
    """``steps`` steps of two commands each, the caller doing nothing between them."""
    replies: list[Any] = []
    async with StepConnection(r, pacer) as line:
        for n in range(steps):
            replies += await line.calls([("SET", f"step:{n}", "x"), ("GET", f"step:{n}")])
    return replies


async def test_steps_beside_other_traffic_leave_the_server_idle(r: Redis, redis_url: str) -> None:
    pacer = Recording(duty=0.25)
    async with other_traffic(lambda: Redis.from_url(redis_url)):
        started = time.perf_counter()
        replies = await _steps(r, pacer)
        wall = time.perf_counter() - started
    assert replies == ["OK", "x"] * STEPS
    assert pacer.busy
    assert pacer.asked == STEPS - 1  # the gap is asked before each step but the first
    assert pacer.paced >= pacer.asked - 1  # every step held back (but one, around a look)
    assert pacer.slept > 0
    assert pacer.held <= 0.25 * wall + 0.002  # the steps' share (round trips: an upper bound)


async def test_steps_on_a_quiet_server_run_at_full_speed(r: Redis) -> None:
    pacer = Recording(duty=0.25)
    steps = 4 * STEPS  # outlasting the second look (FIRST_LOOK) on a fast machine too
    assert await _steps(r, pacer, steps) == ["OK", "x"] * steps
    assert not pacer.busy
    # paced only until its second look (the first that can judge) found the server quiet;
    # how many steps that was depends on the machine's speed
    assert pacer.quiet_look == 2
    assert pacer.paced == pacer.quiet_at


async def test_a_refused_info_keeps_the_steps_paced(sync_r: redis.Redis, redis_url: str) -> None:
    pacer = Recording(duty=0.5)
    async with without_info(sync_r, redis_url) as limited:
        assert await _steps(limited, pacer) == ["OK", "x"] * STEPS
    assert pacer.busy
    assert pacer.paced == pacer.asked == STEPS - 1


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Pacer]:
    """Every pacer made while the test runs, each a :class:`Recording`."""
    monkeypatch.setattr(pacing, "Pacer", Recording)
    return record_pacers(monkeypatch)


async def test_warmup_steps_are_paced_at_the_settings_duty(
    database_url: str, redis_url: str, recorded: list[Pacer]
) -> None:
    """warmup on one server, through a client from settings (ECHOES_OPS_WALK_DUTY 0.4):
    beside another client's traffic its script calls are held back at that duty cycle and
    write the same as ever; on a quiet tier almost none are."""
    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=SETTINGS_RUN,
    )
    settings = Settings.load(env={"REDIS_URL": redis_url, "ECHOES_OPS_WALK_DUTY": "0.4"})
    async with open_redis(settings.redis_target()) as client:
        async with other_traffic(lambda: Redis.from_url(redis_url)):
            report = await warmup(
                client, database_url, operator="test", what=PLAYERS, active_within=420
            )
        assert report.sessions.written == SETTINGS_RUN
        assert await client.exists(keys.session_key(SETTINGS_RUN)) == 1
        paced = [p for p in recorded if p.paced]
        assert paced, "no pacer held a step back"
        assert all(p.duty == 0.4 for p in recorded)
        steps = report.script_calls // 2  # two calls a step (CALLS_IN_FLIGHT)
        assert sum(p.paced for p in paced) >= steps - 4
        assert sum(p.slept for p in paced) > 0

        recorded.clear()
        await client.delete(*(keys.session_key(n) for n in range(1, SETTINGS_RUN + 1)))
        quiet = await warmup(client, database_url, operator="test", what=PLAYERS, active_within=420)
        assert quiet.sessions.written == SETTINGS_RUN
        assert recorded
        # paced only until its second look (FIRST_LOOK after the first) found the server
        # quiet, never after
        assert all(isinstance(p, Recording) and not p.busy for p in recorded)
        assert all(
            p.quiet_look == 2 and p.quiet_at == p.paced
            for p in recorded
            if isinstance(p, Recording)
        )


async def test_cluster_warmup_keeps_one_pacing_per_node_for_the_run(
    database_url: str, cluster_r: Any, cluster_settings: Settings, recorded: list[Pacer]
) -> None:
    """On a cluster warmup's calls go through bulk(stepped=True) per node, a bulk call per
    round: each node keeps one pacer for the whole run. A new pacer per call paced every
    step until its second look, 50 ms on, which a round rarely lasts: on a quiet cluster
    about one step in eight of 6,000 characters was held back (0.3 s of sleep in a 1.2 s run)."""
    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=CHARACTERS,
    )
    quiet = await warmup(cluster_r, database_url, operator="test", what=PLAYERS, active_within=420)
    assert quiet.sessions.written == CHARACTERS
    assert len(recorded) == 3  # one per primary, whatever the number of rounds
    assert all(isinstance(p, Recording) and not p.busy for p in recorded)
    assert all(p.quiet_at == p.paced for p in recorded if isinstance(p, Recording))

    recorded.clear()
    for n in range(1, 200):
        await cluster_r.delete(keys.session_key(n))
    async with other_traffic(lambda: make_client(cluster_settings.redis_target())):
        busy = await warmup(
            cluster_r, database_url, operator="test", what=PLAYERS, active_within=420
        )
    assert busy.sessions.written == 199
    assert len(recorded) == 3
    assert all(p.busy for p in recorded)
    assert sum(p.paced for p in recorded) > 0
