"""The server-time budget (#16): step sizes that adapt to what each step cost, walks that
overlap the client's work with the server's next step, and Lua steps that report their own
duration."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis
from redis.asyncio import Redis

from echoes_ops.client.budget import BUDGET_P99_S, GROWTH, StepBudget, lua_micros, lua_walk
from echoes_ops.contract import keys, scripts
from echoes_ops.operations.tiercount import count_tier
from echoes_ops.operations.tiermap import census, session_batches
from tests.waiting import eventually


def test_a_long_step_shrinks_the_next_at_once() -> None:
    budget = StepBudget(400, target=0.001)
    assert budget.observe(400, 0.004) == 100  # four times too long: a quarter of the size
    assert budget.over_budget == 1
    assert budget.longest == 0.004


def test_short_steps_grow_gently_up_to_the_target() -> None:
    budget = StepBudget(100, target=0.001)
    sizes = []
    for _ in range(12):
        used = budget.size
        sizes.append(budget.observe(used, used * 2e-6))  # 2 us per item: 500 fit the target
    assert sizes[0] == int(100 * GROWTH)  # never more than GROWTH per step
    assert all(b <= a * GROWTH + 1 for a, b in itertools.pairwise(sizes))
    assert sizes[-1] == 500  # and it settles where a step costs the target


def test_a_step_of_one_grows_again() -> None:
    # int(1 * GROWTH) is 1: without a floor of one more, a step shrunk to a single item by
    # one long step stayed at one for the rest of the walk (seen in warmup: 14,353 calls of
    # one player instead of about 900)
    budget = StepBudget(1, low=1, high=100, target=0.001)
    sizes = [budget.observe(budget.size, budget.size * 1e-6) for _ in range(6)]
    assert sizes[:3] == [2, 3, 4]
    assert sizes[-1] > 6


def test_sizes_stay_within_their_bounds() -> None:
    budget = StepBudget(50, low=10, high=80, target=0.001)
    for _ in range(5):
        budget.observe(budget.size, 1e-7)
    assert budget.size == 80
    for _ in range(5):
        budget.observe(budget.size, 1.0)
    assert budget.size == 10
    assert StepBudget(3).size == 3  # a smaller first step is taken as asked
    with pytest.raises(ValueError, match="bounds"):
        StepBudget(low=0)


def test_a_cost_that_changes_midway_is_followed() -> None:
    budget = StepBudget(200, target=0.001)
    for _ in range(10):
        budget.observe(budget.size, budget.size * 1e-6)  # cheap keys: grows to 1000
    assert budget.size == 1000
    budget.observe(budget.size, budget.size * 1e-5)  # a node full of sessions: 10x dearer
    assert budget.size == 100


def test_a_step_the_server_was_descheduled_in_costs_one_small_step() -> None:
    """A step whose server clock ran on while redis-server waited for a CPU (six times its
    cost) shrinks the next step at once; that one costs per item what the steps before did,
    so the walk resumes at its size instead of climbing back by GROWTH over several steps
    (on a shared 2-CPU machine a third of a cluster walk's steps were switched out)."""
    budget = StepBudget(200, target=0.001)
    for _ in range(10):
        budget.observe(budget.size, budget.size * 1e-6)
    assert budget.size == 1000
    assert budget.observe(1000, 0.006) == 166  # shrunk at once, as any long step
    after = budget.observe(166, 166 * 1e-6)  # the keys cost what they did: it was a wait
    assert after == 1000
    assert budget.waits == 1
    assert budget.over_budget == 1


def test_dearer_keys_after_a_spike_are_believed() -> None:
    """A spike that the next step confirms (the keys are dearer) keeps the steps small."""
    budget = StepBudget(200, target=0.001)
    for _ in range(10):
        budget.observe(budget.size, budget.size * 1e-6)
    budget.observe(1000, 0.006)  # 6 us per item now
    assert budget.observe(166, 166 * 6e-6) == 166  # the target fits 166 such items
    assert budget.waits == 0
    sizes = [budget.observe(budget.size, budget.size * 6e-6) for _ in range(5)]
    assert max(sizes) <= 167
    budget.observe(166, 0.004)  # a later spike shrinks the next step at once as well
    assert budget.size == 41


async def evalsha_calls(r: Redis) -> int:
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_walks_send_the_next_step_before_the_caller_handles_this_one(
    r: Redis, crowded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the walk hands over a step's reply, the server already has the next step: the
    caller's decoding overlaps the server's work (unpaced: at full speed; a paced walk
    leaves the server idle between steps instead, tests/test_pacing.py)."""
    r.walk_duty = 1.0  # ECHOES_OPS_WALK_DUTY=1: what a client made from the settings carries
    other = r  # another connection of the pool: the walk holds its own
    before = await evalsha_calls(other)
    seen = []

    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, size]

    async for reply in lua_walk(r, scripts.CENSUS_STEP, args, StepBudget(100)):
        seen.append(reply)
        if len(seen) == 1:
            assert str(reply[0]) != "0"

            # the next step was written before this reply was handed over: the server
            # counts it as soon as it has run it
            async def next_step_run() -> bool:
                return await evalsha_calls(other) - before >= 2

            await eventually(next_step_run, 5, "the next step to be sent", interval=0.001)
    assert len(seen) > 2


async def test_leaving_a_walk_early_discards_its_connection(r: Redis, crowded: int) -> None:
    def args(cursor: str, size: int) -> list[str | int]:
        return [cursor, size]

    walk = lua_walk(r, scripts.CENSUS_STEP, args, StepBudget(50))
    async for reply in walk:
        assert str(reply[0]) != "0"
        break
    await walk.aclose()
    # the step in flight was not left for the next user of the pool to read
    assert await r.ping() is True
    assert await r.set("after", "1") is True
    assert await r.get("after") == "1"


def test_lua_micros() -> None:
    assert lua_micros(1500) == 0.0015
    assert lua_micros(-1) is None
    assert lua_micros(None) is None


@pytest.fixture
def crowded(sync_r: redis.Redis) -> int:
    """600 sessions among 1,400 other keys."""
    pipe = sync_r.pipeline(transaction=False)
    for cid in range(1, 601):
        pipe.hset(keys.session_key(cid), mapping={"location_id": "a", "worker_id": "w1"})
        pipe.hset(keys.session_key(cid), "last_heartbeat", "1700000000")
    for n in range(1400):
        pipe.set(f"other:{n}", "x")
    pipe.execute()
    return 600


async def test_steps_report_their_server_time(r: Redis, crowded: int) -> None:
    script = r.register_script(scripts.CENSUS_STEP)
    reply = await script(args=["0", 200])
    micros = lua_micros(reply[2])
    assert micros is not None
    assert 0 <= micros < 1.0


@pytest.mark.parametrize("walk", ["census", "sessions", "tier count"])
async def test_walks_shrink_their_steps_to_the_budget(r: Redis, crowded: int, walk: str) -> None:
    """A target no step can meet drives the steps down to the smallest size; the walk still
    sees every key (the same result as a walk with one fixed size)."""
    tight = StepBudget(500, target=1e-9, low=5)
    if walk == "census":
        tier = await census(r, budget=tight)
        assert len(tier.sessions) == crowded
    elif walk == "sessions":
        seen = {
            row.character_id async for batch in session_batches(r, budget=tight) for row in batch
        }
        assert len(seen) == crowded
    else:
        counted = await count_tier(r, stale_after=60, budget=tight)
        assert len(counted.sessions) == crowded
    assert tight.size == 5
    assert tight.steps > 2000 / 500  # smaller steps than asked at first: more of them
    assert tight.over_budget <= tight.steps


async def test_walks_grow_their_steps_when_the_server_is_idle(r: Redis, crowded: int) -> None:
    roomy = StepBudget(10, target=1.0, high=4000)  # any step is short against a second
    tier = await census(r, budget=roomy)
    assert len(tier.sessions) == crowded
    assert roomy.size > 10
    assert roomy.longest < 1.0
    assert BUDGET_P99_S == 0.001


async def test_a_cluster_walk_reads_every_primary_at_once(cluster_r, cluster_url: str) -> None:
    """On a cluster the walk runs on the three primaries together (each with its own copy of
    the budget): every session comes back once, and every node's steps are counted."""
    from redis.cluster import RedisCluster as SyncCluster

    sync = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    try:
        for cid in range(1, 901):
            sync.hset(keys.session_key(cid), mapping={"location_id": "a", "worker_id": "w1"})
    finally:
        sync.close()
    budget = StepBudget(20)
    seen: list[int] = []
    async for batch in session_batches(cluster_r, budget=budget):
        seen.extend(row.character_id for row in batch)
    assert sorted(seen) == list(range(1, 901))
    assert budget.steps >= 3  # every node's steps are counted in the caller's budget


class _CountingGate(asyncio.Semaphore):
    """A semaphore that remembers the most places held at once."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self.places = value
        self.most = 0

    async def acquire(self) -> bool:
        await super().acquire()
        self.most = max(self.most, self.places - self._value)
        return True


def _fill_cluster(cluster_url: str, count: int) -> None:
    from redis.cluster import RedisCluster as SyncCluster

    sync = SyncCluster.from_url(cluster_url.replace("?cluster=true", ""), decode_responses=True)
    try:
        pipe = sync.pipeline()
        for cid in range(1, count + 1):
            pipe.hset(keys.session_key(cid), mapping={"location_id": "a", "worker_id": "w1"})
        pipe.execute()
    finally:
        sync.close()


@pytest.mark.parametrize("cpus", [1, 2])
async def test_nodes_on_this_machine_run_no_more_steps_at_once_than_it_has_cpus(
    cluster_settings, cluster_url: str, cpus: int
) -> None:
    """Three primaries on a machine of fewer CPUs: their steps share one gate of that many
    places (more at once, and the servers take turns on the CPUs mid-step); every walk of
    the cluster (sessions, the tier count, the census) still reads every session once, and
    gives every place back, also when left early."""
    from echoes_ops.client.connect import open_redis

    _fill_cluster(cluster_url, 3000)
    async with open_redis(cluster_settings.redis_target()) as cluster_r:
        gate = _CountingGate(cpus)
        cluster_r._step_gate = gate  # what local_step_gate() hands to the node clients
        seen: list[int] = []
        async for batch in session_batches(cluster_r, budget=StepBudget(20)):
            seen.extend(row.character_id for row in batch)
        assert sorted(seen) == list(range(1, 3001))
        assert gate.most == cpus  # the gate was used, and never over its places
        assert gate._value == cpus  # every place given back
        counted = await count_tier(cluster_r, stale_after=300)
        assert len(counted.sessions) == 3000
        found = await census(cluster_r)
        assert len(found.sessions) == 3000
        assert gate._value == cpus

        walk = session_batches(cluster_r, budget=StepBudget(20))
        async for _ in walk:
            break
        await walk.aclose()
        assert gate._value == cpus  # a walk left early gives its places back too


def test_only_nodes_on_this_machine_are_gated(monkeypatch) -> None:
    from redis.asyncio.cluster import ClusterNode

    from echoes_ops.client.connect import NodeRedis, make_client
    from echoes_ops.config import Settings

    env = {"REDIS_URL": "redis://127.0.0.1:7000/0?cluster=true", "ECHOES_OPS_STEP_GATE": "auto"}
    r = make_client(Settings.load(env=env).redis_target())
    here = [r.node_client(ClusterNode(h, 7000)) for h in ("127.0.0.1", "localhost", "127.0.0.5")]
    there = r.node_client(ClusterNode("10.1.2.3", 7000))
    gates = {id(c.step_gate) for c in here if isinstance(c, NodeRedis)}
    assert len(gates) == 1
    assert None not in {c.step_gate for c in here}
    assert isinstance(there, NodeRedis)
    assert there.step_gate is None


@pytest.mark.parametrize(
    ("value", "places"), [("", None), ("auto", "cpus"), ("3", 3), ("off", None)]
)
def test_the_step_gate_follows_its_setting(monkeypatch, value: str, places) -> None:
    """ECHOES_OPS_STEP_GATE: off by default, auto (this process's CPUs) or a number."""
    from redis.asyncio.cluster import ClusterNode

    from echoes_ops.client.connect import local_cpus, make_client
    from echoes_ops.config import Settings

    env = {"REDIS_URL": "redis://127.0.0.1:7000/0?cluster=true", "ECHOES_OPS_STEP_GATE": value}
    r = make_client(Settings.load(env=env).redis_target())
    gate = r.node_client(ClusterNode("127.0.0.1", 7000)).step_gate
    if places is None:
        assert gate is None
    else:
        assert gate is not None
        assert gate._value == (local_cpus() if places == "cpus" else places)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ECHOES_OPS_STEP_GATE", "two"), ("ECHOES_OPS_STEP_GATE", "0"), ("ECHOES_OPS_WALK_DUTY", "5")],
)
def test_a_bad_walk_setting_fails_every_command_at_once(redis_url, name: str, value: str) -> None:
    """stats runs no paced walk (and a cluster-less tier no gate), yet a typo in either
    setting is one line and exit 3 before anything runs, as for the commands that use it."""
    from echoes_ops.errors import ExitCode
    from tests.cli_helpers import cli

    out = cli("stats", env={"REDIS_URL": redis_url, name: value})
    assert out.code == ExitCode.CONFIG
    assert name in out.one_error_line()
