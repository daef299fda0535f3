"""The server-time budget for stepped walks (docs/design.md, decision 11; issue #16).

A walk over the keyspace runs as many short server commands (a Lua SCAN step, a batch of
reads). A fixed batch size is either too big somewhere (a step over a node full of sessions
holds the server for milliseconds) or too small elsewhere (round trips dominate). Here the
size adapts to what each step cost: :class:`StepBudget` is told how long a step held the
server (the script's own clock where it reports one, else the round trip) and shrinks the next
step at once when one ran long, grows it gently while steps stay short. The target is below
the budget (1 ms p99, 2 ms max per command) so that ordinary jitter stays inside it.

:func:`node_walk` drives a walk of Lua SCAN steps with it and writes the next step to the
server before the caller handles the current one's reply, so decoding in Python overlaps
the server's next step (one command in flight at a time: the server is never asked for two
steps at once). While other clients use the server, :class:`~echoes_ops.client.pacing.Pacer`
leaves it idle between steps instead (at most ``ECHOES_OPS_WALK_DUTY`` of its time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis, NodeRedis, ReplicaRedis
from echoes_ops.client.nodes import primary_clients
from echoes_ops.client.pacing import PacedLine, Pacer, pacer_of

BUDGET_P99_S = 0.001  # what no command of ours may exceed at p99 (#16)
BUDGET_MAX_S = 0.002  # ... and at its maximum
# what a step aims at: under the budget with room for a step's cost to vary with the keys
# it meets (at 0.7 ms, with the servers at SCHED_RR, the longest steps still took 1.5-2.1 ms;
# at 0.5 ms 0.83-0.93 ms on one server: docs/benchmarks/history.md, run of record of 13:33)
TARGET_S = 0.0005
GROWTH = 1.5  # a short step lets the next grow by at most this factor
SMOOTHING = 0.3  # weight of the newest step in the per-item cost estimate
SPIKE = 2.0  # a long step dearer per item than this times the estimate: on trial (below)


@dataclass
class StepBudget:
    """The size of the next step of a walk, adapted to what the steps so far cost.

    ``size`` is the next step's size (keys per SCAN step, commands per batch), always within
    ``[low, high]``. ``observe(used, seconds)`` reports a step of ``used`` items that held the
    server ``seconds``: a step over ``target`` makes the next one proportionally smaller at
    once; shorter steps let it grow by at most ``GROWTH`` per step towards ``target``.

    A long step far dearer per item than the estimate (``SPIKE`` times) is on trial: the next
    step is shrunk at once as for any long step, and if that one costs per item what the steps
    before the spike did, the spike was not the keys' cost but the server waiting for a CPU
    mid-step (its clock runs on while it is descheduled), and the walk resumes at its size
    before the spike instead of climbing back by ``GROWTH`` over several steps. A dearer
    patch of keys shows in the next step too and is believed then. On a machine whose CPUs
    the servers share (a local cluster: three primaries and the client on two CPUs), a third
    to a half of the steps were switched out mid-work and each cost about four small steps;
    shrinking does not make the wait shorter, only the steps more (docs/benchmarks/inspect.md, #14).
    The figures (steps, longest, total) are kept for reports and benchmarks.
    """

    size: int = 400
    target: float = TARGET_S
    low: int = 10
    high: int = 5000
    steps: int = 0
    longest: float = 0.0
    total: float = 0.0
    over_budget: int = 0  # steps that took longer than BUDGET_P99_S
    waits: int = 0  # spikes the next step showed were not the keys' cost
    _cost: float | None = field(default=None, repr=False)  # seconds per item, smoothed
    _trial: tuple[float, int] | None = field(default=None, repr=False)  # (estimate, size)

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(
                f"step bounds must satisfy 0 < low <= high, got {self.low}, {self.high}"
            )
        if self.target <= 0:
            raise ValueError(f"target must be positive, got {self.target}")
        self.low = min(self.low, max(self.size, 1))  # a smaller first step is honoured
        self.size = min(max(self.size, self.low), self.high)

    def observe(self, used: int, seconds: float) -> int:
        """Record a step of ``used`` items that took ``seconds``; return the next size."""
        self.steps += 1
        self.total += seconds
        self.longest = max(self.longest, seconds)
        if seconds > BUDGET_P99_S:
            self.over_budget += 1
        cost = seconds / max(used, 1)
        trial, self._trial = self._trial, None
        if seconds > self.target:
            if trial is None and self._cost is not None and cost > SPIKE * self._cost:
                self._trial = (self._cost, used)  # on trial: the next step tells
            else:
                self._cost = cost  # a long step is believed at once
            return self._resize(used * self.target / seconds)
        if trial is not None and cost <= SPIKE * trial[0]:
            self.waits += 1  # the spike was a wait, not the keys: resume where it was
            used = trial[1]
        elif trial is not None or self._cost is None:
            self._cost = cost  # the first step, or the dearer keys a spike announced
        else:
            self._cost = (1 - SMOOTHING) * self._cost + SMOOTHING * cost
        # at least one more: int() of 1 * GROWTH would keep a step of 1 at 1 for ever
        return self._resize(max(used * GROWTH, used + 1))

    def _resize(self, wanted: float) -> int:
        """The next size: ``wanted``, no more than the estimate lets fit the target."""
        cost = self._cost
        ideal = self.target / cost if cost is not None and cost > 0 else float(self.high)
        self.size = int(min(max(min(ideal, wanted), self.low), self.high))
        return self.size

    def as_dict(self) -> dict[str, float | int]:
        return {
            "steps": self.steps,
            "longest_ms": round(self.longest * 1000, 3),
            "total_ms": round(self.total * 1000, 1),
            "over_budget": self.over_budget,
            "waits": self.waits,
            "last_size": self.size,
        }


async def lua_walk(
    r: AnyRedis,
    script: str,
    make_args: Callable[[str, int], Sequence[Any]],
    budget: StepBudget,
    *,
    micros_at: int = 2,
) -> AsyncIterator[Any]:
    """:func:`node_walk` on one server; on a cluster, on every primary at once, each node's
    steps sized by its own copy of ``budget`` (their figures are added to ``budget`` when
    the walk ends), the replies yielded as they come (node order is not kept)."""
    clients = await primary_clients(r) if isinstance(r, RedisCluster) else [r]
    if len(clients) == 1:
        async for reply in node_walk(clients[0], script, make_args, budget, micros_at=micros_at):
            yield reply
        return
    budgets = [
        StepBudget(budget.size, target=budget.target, low=budget.low, high=budget.high)
        for _ in clients
    ]
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=4 * len(clients))

    async def walk(index: int, client: Redis) -> None:
        async for reply in node_walk(
            client, script, make_args, budgets[index], micros_at=micros_at
        ):
            await queue.put((0, reply))

    tasks = [asyncio.ensure_future(walk(i, c)) for i, c in enumerate(clients)]
    done_signal = asyncio.ensure_future(_all_done(tasks, queue))
    try:
        while True:
            kind, item = await queue.get()
            if kind == 1:
                break
            yield item
        for task in tasks:  # a node's failure is the walk's failure
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in (*tasks, done_signal):
            task.cancel()
        await asyncio.gather(*tasks, done_signal, return_exceptions=True)
        for part in budgets:
            budget.steps += part.steps
            budget.total += part.total
            budget.over_budget += part.over_budget
            budget.waits += part.waits
            budget.longest = max(budget.longest, part.longest)
        budget.size = min(part.size for part in budgets)


async def _all_done(
    tasks: Sequence[asyncio.Future[None]], queue: asyncio.Queue[tuple[int, Any]]
) -> None:
    """Put the end marker once every node's walk has ended (or one has failed)."""
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    await queue.put((1, None))


async def node_walk(
    r: Redis,
    script: str,
    make_args: Callable[[str, int], Sequence[Any]],
    budget: StepBudget,
    *,
    micros_at: int = 2,
    pacer: Pacer | None = None,
) -> AsyncIterator[Any]:
    """Run a Lua step script (no KEYS; ARGV from ``make_args(cursor, size)``) from cursor "0"
    until its reply's first element, the next cursor, is "0", and yield each reply.

    The script reports the microseconds it held the server at ``micros_at`` of its reply
    (``STEP_CLOCK``); ``budget`` sizes every step by it (by the round trip when the script
    could not read its clock). At most one step is in flight, on one connection of ``r``'s
    pool. While the server is quiet the next step is written before the current reply is
    yielded, so the caller's work on it overlaps the server's next step; while others use
    the server, ``pacer`` (client/pacing.py; one is made from ``r``'s settings,
    ``ECHOES_OPS_WALK_DUTY``, when not given) holds the next step back so that the walk takes at most its duty cycle of
    the server's time.
    Leaving the walk early discards that connection (a reply may still be due) rather
    than returning it to the pool.
    """
    pacer = pacer if pacer is not None else pacer_of(r)
    sha = await r.script_load(script)
    pool = r.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    line = PacedLine(conn, pacer)

    # on a cluster node, ASKING before each step: a node importing a slot (a resharding
    # under way) refuses a script that reads the keys it already holds of it otherwise
    # on a replica (--read-from replicas): READONLY, and the script run read-only
    replica = isinstance(r, ReplicaRedis)
    first = ("READONLY",) if replica else ("ASKING",)
    asking = hiredis.pack_command(first) if isinstance(r, NodeRedis) else b""
    evalsha = "EVALSHA_RO" if replica else "EVALSHA"

    # a node on this machine: a place at the CPU gate for each step in flight (connect.py)
    gate = r.step_gate if isinstance(r, NodeRedis) else None
    in_gate = False

    async def send(cursor: str, size: int) -> None:
        nonlocal in_gate
        command = (evalsha, sha, 0, *make_args(cursor, size))
        if gate is not None:
            await gate.acquire()
            in_gate = True
        await line.write(asking + hiredis.pack_command(command))

    async def receive() -> Any:
        answer = await conn.read_response()
        if isinstance(answer, ResponseError):
            raise answer
        return answer

    try:
        size = budget.size
        await send("0", size)
        while True:
            if asking:
                await receive()
            reply = await receive()
            sent = line.sent
            came = await line.came()
            if gate is not None:
                gate.release()
                in_gate = False
            micros = lua_micros(reply[micros_at])
            held = micros if micros is not None else came - sent
            budget.observe(size, held)
            cursor = _text(reply[0])
            paced = line.gap(held) > 0
            if cursor != "0" and not paced:  # overlap the caller's work with the next step
                size = budget.size
                await send(cursor, size)
            yield reply
            if cursor == "0":
                return
            if paced:  # the server stays idle for the gap after the reply came
                await line.rest(came, held)
                size = budget.size
                await send(cursor, size)
    except BaseException:
        await conn.disconnect()  # a reply may still be in flight: never reuse the connection
        raise
    finally:
        if in_gate and gate is not None:
            gate.release()
        await pool.release(conn)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def lua_micros(value: object) -> float | None:
    """A script's reported duration (microseconds, from TIME) in seconds; None if absent."""
    try:
        micros = int(_text(value))
    except (ValueError, UnicodeDecodeError):
        return None
    return micros / 1_000_000 if micros >= 0 else None
