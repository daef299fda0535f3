"""Pacing of the stepped walks (client/pacing.py): while others use the server, a walk
leaves it idle between steps (at most its duty cycle of the server's time); on a quiet
server it runs at full speed; the duty cycle and the CLI's CPU priority are settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import redis
from redis.asyncio import Redis

from echoes_ops.client.budget import StepBudget, node_walk
from echoes_ops.client.connect import make_client, walk_duty_of
from echoes_ops.client.pacing import DEFAULT_DUTY, Pacer
from echoes_ops.client.scan import collect_keys, scan_budget
from echoes_ops.config import Settings
from echoes_ops.contract import scripts
from echoes_ops.errors import ConfigError
from tests.cli_helpers import cli


@pytest.fixture
def keyspace(sync_r: redis.Redis) -> int:
    pipe = sync_r.pipeline(transaction=False)
    for n in range(4000):
        pipe.set(f"filler:{n}", "x")
    pipe.execute()
    return 4000


def census_args(cursor: str, size: int) -> list[str | int]:
    return [cursor, size]


async def walk(r: Redis, pacer: Pacer, budget: StepBudget) -> tuple[int, float]:
    """A whole census walk; (steps whose reply came, seconds)."""
    started = time.perf_counter()
    steps = 0
    async for reply in node_walk(r, scripts.CENSUS_STEP, census_args, budget, pacer=pacer):
        steps += 1
        last = str(reply[0])
    assert last == "0"  # the walk went to the end
    return steps, time.perf_counter() - started


async def test_a_walk_beside_other_traffic_leaves_the_server_idle_between_steps(
    r: Redis, redis_url: str, keyspace: int
) -> None:
    """Another client keeps writing while the walk runs: the walk sees it, holds its steps
    back, and takes at most its duty cycle of the server's time."""
    stop, under_way = asyncio.Event(), asyncio.Event()

    async def game() -> None:
        other = Redis.from_url(redis_url)
        try:
            while not stop.is_set():
                await other.set("game:noise", "x" * 200)
                under_way.set()
        finally:
            await other.aclose()

    noise = asyncio.create_task(game())
    try:
        await asyncio.wait_for(under_way.wait(), 10)  # the other client writes already
        pacer, budget = Pacer(duty=0.25), StepBudget(20, high=20)
        steps, wall = await walk(r, pacer, budget)
    finally:
        stop.set()
        await noise
    assert steps >= keyspace / 40  # a SCAN step may visit a few more than COUNT
    assert pacer.busy
    assert pacer.paced >= budget.steps - 2  # every step after a look held back
    assert pacer.slept > 0
    assert budget.total <= 0.25 * wall + 0.002  # the walk's share of the server's time


async def test_a_walk_on_a_quiet_server_runs_at_full_speed(r: Redis, keyspace: int) -> None:
    """Nobody else sends anything: after its first looks the walk is not held back."""

    class Recording(Pacer):
        quiet_at: int | None = None  # steps paced when the server was first found quiet

        def looked(self, now: float, reply: object, ours: int) -> None:
            super().looked(now, reply, ours)
            if not self.busy and self.quiet_at is None:
                self.quiet_at = self.paced

    pacer, budget = Recording(duty=0.25), StepBudget(20, high=20)
    steps, _ = await walk(r, pacer, budget)
    assert steps >= keyspace / 40  # a SCAN step may visit a few more than COUNT
    assert not pacer.busy
    # paced only until a look found the server quiet (the second, FIRST_LOOK after the
    # first step), never after: however fast the machine, whatever share that was
    assert pacer.quiet_at is not None
    assert pacer.paced == pacer.quiet_at
    assert pacer.paced < budget.steps


async def test_duty_one_never_paces(r: Redis, redis_url: str, keyspace: int) -> None:
    other = Redis.from_url(redis_url)
    try:
        await other.set("game:noise", "x" * 10_000)
        pacer = Pacer(duty=1.0)
        steps, _ = await walk(r, pacer, StepBudget(50, high=50))
    finally:
        await other.aclose()
    assert steps >= keyspace / 100
    assert pacer.paced == 0


def test_the_duty_cycle_is_a_setting_the_clients_carry(tmp_path) -> None:
    """ECHOES_OPS_WALK_DUTY is read with the other settings (so a --config file sets it too)
    and reaches the walks through the clients made from them, node clients included."""

    def duty(env: dict[str, str], config: str | None = None) -> float:
        settings = Settings.load(env=env, config_file=config)
        return walk_duty_of(make_client(settings.redis_target()))

    assert duty({}) == DEFAULT_DUTY == 0.5
    assert duty({"ECHOES_OPS_WALK_DUTY": "0.2"}) == 0.2
    assert duty({"ECHOES_OPS_WALK_DUTY": "1"}) == 1.0
    config = tmp_path / "ops.yaml"
    config.write_text("walk_duty: 0.25\n")
    assert duty({}, str(config)) == 0.25
    assert duty({"ECHOES_OPS_WALK_DUTY": "0.75"}, str(config)) == 0.75  # env over the file
    cluster = make_client(
        Settings.load(
            env={
                "REDIS_URL": "redis://127.0.0.1:7000/0?cluster=true",
                "ECHOES_OPS_WALK_DUTY": "0.3",
            }
        ).redis_target()
    )
    from redis.asyncio.cluster import ClusterNode

    assert walk_duty_of(cluster) == 0.3
    assert walk_duty_of(cluster.node_client(ClusterNode("127.0.0.1", 7001))) == 0.3
    for bad in ("0", "1.5", "-1", "fast"):
        with pytest.raises(ConfigError, match="ECHOES_OPS_WALK_DUTY"):
            Settings.load(env={"ECHOES_OPS_WALK_DUTY": bad})


def test_a_bad_duty_cycle_is_one_line(redis_url: str) -> None:
    out = cli("sessions", "list", env={"REDIS_URL": redis_url, "ECHOES_OPS_WALK_DUTY": "2"})
    assert out.code == 3, out.stderr
    assert out.stderr.startswith("echoes-ops: error: ECHOES_OPS_WALK_DUTY must be")
    assert "Traceback" not in out.stderr


async def test_plain_scan_steps_are_sized_by_their_round_trips(r: Redis, keyspace: int) -> None:
    budget = scan_budget(1000)
    assert budget.size == 200  # a walk starts small
    budget.observe(200, 0.0001)  # a quick round trip: the next step grows
    assert 200 < budget.size <= 300
    budget.observe(budget.size, 0.010)  # a slow one: back to the smallest step at once
    assert budget.size == 200  # (never below: ~0.5 ms of server time on a big keyspace)
    assert scan_budget(50).size == 50  # never above the walk's count
    assert len(await collect_keys(r, "filler:*")) == keyspace


def _nice_of_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import os\nfrom echoes_ops.cli.common import yield_cpu\n"
        "from echoes_ops.config import Settings\n"
        "yield_cpu(Settings.load())\nprint(os.nice(0), os.sched_getscheduler(0))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**{k: v for k, v in os.environ.items() if k != "ECHOES_OPS_NICE"}, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_cli_lowers_its_own_cpu_priority(tmp_path) -> None:
    """Commands that talk to Redis run at nice 10 unless ECHOES_OPS_NICE says otherwise (0:
    unchanged; idle: SCHED_IDLE), so on a host shared with the game the server and workers
    get the CPU first; a --config file can say it too."""
    base = os.nice(0)
    normal = os.sched_getscheduler(0)
    assert _nice_of_cli({}).stdout.split() == [str(max(base, 10)), str(normal)]
    assert _nice_of_cli({"ECHOES_OPS_NICE": "15"}).stdout.split()[0] == str(max(base, 15))
    assert _nice_of_cli({"ECHOES_OPS_NICE": "0"}).stdout.split()[0] == str(base)
    assert _nice_of_cli({"ECHOES_OPS_NICE": "idle"}).stdout.split()[1] == str(os.SCHED_IDLE)
    config = tmp_path / "ops.yaml"
    config.write_text("nice: 12\n")
    shown = _nice_of_cli({"ECHOES_OPS_CONFIG": str(config)})
    assert shown.stdout.split()[0] == str(max(base, 12)), shown.stderr


def test_a_bad_nice_is_one_line(redis_url: str) -> None:
    out = cli("sessions", "list", env={"REDIS_URL": redis_url, "ECHOES_OPS_NICE": "high"})
    assert out.code == 3, out.stderr
    assert out.stderr.startswith("echoes-ops: error: ECHOES_OPS_NICE must be")


async def test_a_user_without_info_walks_paced(
    r: Redis, sync_r: redis.Redis, redis_url: str, keyspace: int
) -> None:
    """INFO refused (an ACL without it, a renamed command): the walk cannot tell whether
    others use the server, so it goes on, paced, instead of failing."""
    sync_r.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info")
    try:
        url = redis_url.replace("redis://", "redis://noinfo:pw@", 1)
        limited = Redis.from_url(url, decode_responses=True)
        try:
            pacer, budget = Pacer(duty=0.5), StepBudget(50, high=50)
            steps, _ = await walk(limited, pacer, budget)
        finally:
            await limited.aclose()
    finally:
        sync_r.execute_command("ACL", "DELUSER", "noinfo")
    assert steps >= keyspace / 100
    assert pacer.busy
    assert pacer.paced >= budget.steps - 2


def test_the_look_schedule_and_the_quiet_verdict() -> None:
    """The second look comes FIRST_LOOK after the first (the first only sets the baseline),
    later ones LOOK_EVERY apart; others' bytes over QUIET_RATE a second make the tier busy.
    Pure logic on given clock readings, so the integration tests need not count steps."""
    from echoes_ops.client.pacing import FIRST_LOOK, LOOK_EVERY, QUIET_RATE

    def info(total: int) -> bytes:
        return b"# Stats\r\ntotal_net_input_bytes:%d\r\n" % total

    pacer = Pacer(duty=0.5)
    assert pacer.busy
    assert pacer.want_look(0.0)
    pacer.looked(10.0, info(1000), ours=0)
    assert pacer.busy  # one reading cannot judge
    assert not pacer.want_look(10.0 + FIRST_LOOK * 0.9)
    assert pacer.want_look(10.0 + FIRST_LOOK)
    quiet_bytes = int(QUIET_RATE * FIRST_LOOK) - 1  # others' bytes just under the rate
    pacer.looked(10.0 + FIRST_LOOK, info(1000 + 500 + quiet_bytes), ours=500)
    assert not pacer.busy
    assert pacer.gap(0.001) == 0.0
    assert not pacer.want_look(10.0 + FIRST_LOOK + LOOK_EVERY * 0.9)
    at = 10.0 + FIRST_LOOK + LOOK_EVERY
    assert pacer.want_look(at)
    pacer.looked(at, info(1000 + 500 + quiet_bytes + int(QUIET_RATE * LOOK_EVERY) + 2), ours=0)
    assert pacer.busy
    assert pacer.gap(0.001) == 0.001  # duty 0.5: as long idle as the step held it
