"""``preload --online`` and preload on Redis Cluster: the diff written in steps, each inside
the server-time budget (docs/design.md, decision 11), the version record last.

The atomic preload sends the whole diff as one MULTI/EXEC, which holds the server for about
3 microseconds per key (61-95 ms for 22,000 keys). On a live tier that is the latency spike
echoes-ops is meant to diagnose. The stepped writer gives up "never a mix" for "never a
stall", and measures the price:

1. Every key to write is replaced by ``REPLACE_HASHES`` (DEL + HSET of whole hashes, one
   atomic call per step): a reader sees a key's old hash or its new one, never a gap and
   never a half-written record. A step holds as many keys as fit the budget: the script
   reports the server time it spent and the walks' shared ``client.budget.StepBudget``
   sizes the next steps from it, aiming at ``TARGET_US`` (never over ``MAX_STEP_BYTES`` of
   arguments, whose parsing the script's clock does not see). On one server the steps go
   one call at a time, paced by one ``client.pacing`` pacer for the whole run (the server
   idle between steps while the game uses it; a quiet tier at full speed). On Redis
   Cluster a step holds keys of one slot only (sorted by ``slot_of``), so each step is
   atomic there too; each primary's share of a round goes in steps of about the keys one
   step holds on one server, one step in flight per node, paced by one pacer per node for
   the whole run.
2. The location index gains new locations after their keys exist, and loses removed ones
   before their keys go (SADD/SREM in bounded batches): the index never names a missing key.
3. Entries gone from gamedata are deleted, in steps.
4. The version record is written last: until then it names the previous version, so a run
   that was stopped or cut off is visible (``status``, ``cache status``) and the next run
   diffs and writes what still differs (a re-run converges).
5. A verify pass re-reads every written key and compares it with what was written, checks
   that removed keys are gone, the index and the version record.

The mixed window, printed at the end, is the time from the first step sent to the version
record's reply: readers could see some entries of the new dataset beside some of the old
during it (never a half-written entry).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    RedisClusterException,
    RedisError,
)

from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import Command, pairs, reloading
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.errors import translate
from echoes_ops.client.pacing import Pacer, pacer_of
from echoes_ops.client.slots import slot_of
from echoes_ops.contract import keys
from echoes_ops.contract.scripts_static import REPLACE_HASHES
from echoes_ops.errors import DataLostError, OpsError, UnreachableError
from echoes_ops.operations.preload_send import FAILOVER_ERRORS, NOT_FAILOVER, is_cluster, send
from echoes_ops.operations.static_data import Encoded, Flat, as_mapping
from echoes_ops.operations.stop import StopToken
from echoes_ops.primitives.lease import Lease, LockLostError

TARGET_US = 400  # server time one step aims at (budget: 1 ms p99, 2 ms max per command)
FIRST_STEP_KEYS = 16
MIN_STEP_KEYS = 1
MAX_STEP_KEYS = 512
MAX_STEP_BYTES = 48 * 1024  # argument bytes of one call (parsed before the script's clock)
STEPS_PER_ROUND = 16  # steps' worth of keys sent together; sizes adjust between rounds
MAX_CALLS_PER_ROUND = 512  # on a cluster a step holds the keys of one slot: often one
INDEX_BATCH = 256  # members per SADD/SREM of the location index
READ_BATCH = 500  # commands per round trip of the verify pass
# what the atomic swap's EXEC costs the server per key written (benchmarks/preload.py:
# 61-95 ms for 22,000 keys), and the longest a command may hold it (the budget's max)
ATOMIC_US_PER_KEY = 3.5
BUDGET_MAX_US = 2000

Progress = Callable[[int, int], None]
Item = tuple[str, Flat]  # a key and its fields (empty: delete the key)


@dataclass
class OnlineReport:
    """What the stepped writer did and how long readers could see a mix."""

    steps: int = 0
    longest_step_us: int = -1  # as the script measured it; -1: it could not (no TIME)
    step_keys_final: int = 0
    mixed_window_s: float = 0.0
    verified_keys: int = 0
    per_slot: bool = False
    step_us: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "longest_step_ms": (
                round(self.longest_step_us / 1000, 3) if self.longest_step_us >= 0 else None
            ),
            "mixed_window_s": round(self.mixed_window_s, 3),
            "verified_keys": self.verified_keys,
            "per_slot": self.per_slot,
        }


def advice(keys_to_change: int, *, first_load: bool = False, cluster: bool = False) -> str:
    """Which preload fits a diff of ``keys_to_change`` keys on a live tier: the atomic swap
    while its EXEC stays within the budget (or on a first load, when there is nothing to
    mix with), else ``--online``. On Redis Cluster there is one kind: stepped per slot."""
    hold_ms = keys_to_change * ATOMIC_US_PER_KEY / 1000
    if cluster:
        return (
            "echoes-ops preload (on Redis Cluster always in per-slot steps inside the budget; "
            "it prints how long readers could see a mix)"
        )
    if first_load:
        return "echoes-ops preload (a first load: one atomic swap, nothing to mix with)"
    if keys_to_change * ATOMIC_US_PER_KEY <= BUDGET_MAX_US:
        return (
            f"echoes-ops preload ({keys_to_change:,} keys: the atomic swap holds the server "
            f"about {hold_ms:.1f} ms, within the budget)"
        )
    return (
        f"echoes-ops preload --online ({keys_to_change:,} keys: the atomic swap would hold "
        f"the server about {hold_ms:.0f} ms; --online keeps every command under 1 ms, "
        "readers may see old and new entries side by side for the printed window)"
    )


def atomic_hold_warning(keys_to_change: int) -> str | None:
    """The warning before an atomic swap of ``keys_to_change`` keys whose EXEC would hold
    the server past the budget's max, or None."""
    if keys_to_change * ATOMIC_US_PER_KEY <= BUDGET_MAX_US:
        return None
    return (
        f"the atomic swap writes {keys_to_change:,} keys and holds the server about "
        f"{keys_to_change * ATOMIC_US_PER_KEY / 1000:.0f} ms; on a live tier use "
        "preload --online (steps under 1 ms)"
    )


def _slot_of(r: AnyRedis) -> Callable[[str], int] | None:
    if not isinstance(r, RedisCluster):
        return None
    return slot_of


class _Writer:
    """Sends REPLACE_HASHES steps, sized by the shared :class:`~echoes_ops.client.budget.StepBudget`, checking ``stop`` and the
    lock between rounds."""

    def __init__(
        self,
        r: AnyRedis,
        *,
        stop: StopToken,
        lease: Lease | None,
        progress: Progress | None,
        total: int,
        report: OnlineReport,
    ) -> None:
        self.r = r
        self.stop = stop
        self.lease = lease
        self.progress = progress
        self.total = total
        self.done = 0
        self.report = report
        self.sizer = StepBudget(
            size=FIRST_STEP_KEYS, target=TARGET_US / 1e6, low=MIN_STEP_KEYS, high=MAX_STEP_KEYS
        )
        self.slot_of = _slot_of(r)
        self.pacer = pacer_of(r)  # one for every round of the run (one server)
        self.pacers: dict[str, Pacer] = {}  # the same per node (cluster), by node name
        self.sha = ""
        self.first_sent: float | None = None

    async def load(self) -> None:
        self.sha = str(await self.r.script_load(REPLACE_HASHES))

    def _check(self, phase: str) -> None:
        if self.stop():
            raise self.stop.stopped(phase, {"committed": False, "keys_done": self.done})
        if self.lease is not None and self.lease.lost.is_set():
            raise LockLostError(
                f"lost {self.lease.handle.key} during the online preload: {phase}; "
                "run preload --online again (it writes what still differs)"
            )

    def _steps(self, items: Sequence[Item], start: int) -> tuple[list[Command], list[int], int]:
        """About ``STEPS_PER_ROUND`` full steps' worth of keys from ``items[start:]``, as
        calls; returns them, how many keys each holds and where the next round starts. On a
        cluster ``items`` are sorted by slot and a step never crosses a slot, so a round
        holds more (smaller) calls."""
        calls: list[Command] = []
        sizes: list[int] = []
        at = start
        budget = self.sizer.size * STEPS_PER_ROUND
        while at < len(items) and at - start < budget and len(calls) < MAX_CALLS_PER_ROUND:
            step_keys: list[str] = []
            counts: list[str] = []
            values: list[str] = []
            size = 0
            slot = self.slot_of(items[at][0]) if self.slot_of else None
            while at < len(items) and len(step_keys) < self.sizer.size:
                key, flat = items[at]
                if slot is not None and self.slot_of and self.slot_of(key) != slot:
                    break
                cost = len(key) + sum(len(v) for v in flat)
                if step_keys and size + cost > MAX_STEP_BYTES:
                    break
                step_keys.append(key)
                counts.append(str(len(flat)))
                values.extend(flat)
                size += cost
                at += 1
            calls.append(("EVALSHA", self.sha, len(step_keys), *step_keys, *counts, *values))
            sizes.append(len(step_keys))
        return calls, sizes, at

    async def replace(self, items: Sequence[Item], phase: str) -> None:
        """Write (or, for empty fields, delete) ``items`` in budget-sized steps."""
        if self.slot_of is not None:
            slot_of = self.slot_of
            items = sorted(items, key=lambda item: (slot_of(item[0]), item[0]))
        at = 0
        while at < len(items):
            self._check(f"{phase}: {self.done:,} of {self.total:,} keys done")
            calls, sizes, nxt = self._steps(items, at)
            if self.first_sent is None:
                self.first_sent = time.perf_counter()
            sent = time.perf_counter()
            replies = await self._run(calls, self._calls_per_step(sizes))
            spent = [int(reply) for reply in replies]
            if all(micros < 0 for micros in spent):
                # the script could not read its clock (an ACL without TIME): the round trip
                # of the round, spread over its keys, stands in (it only overstates)
                self.sizer.observe(sum(sizes), time.perf_counter() - sent)
            for used, micros in zip(sizes, spent, strict=True):
                if micros >= 0:
                    self.sizer.observe(used, micros / 1e6)
            self.report.steps += len(calls)
            self.report.step_us.extend(spent)
            self.report.longest_step_us = max(self.report.longest_step_us, *spent)
            self.done += nxt - at
            at = nxt
            if self.progress:
                self.progress(self.done, self.total)
        self.report.step_keys_final = self.sizer.size

    async def plain(self, commands: Sequence[Command], phase: str) -> None:
        """Commands outside the script (the location index's SADD/SREM batches), one a
        step, paced by the run's pacing like the script's steps (sent as one round, a
        world that adds thousands of locations held the server back to back for them)."""
        self._check(phase)
        if self.first_sent is None and commands:
            self.first_sent = time.perf_counter()
        replies = await send(self.r, commands, step=1, pacer=self.pacer, pacers=self.pacers)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def _calls_per_step(self, sizes: Sequence[int]) -> int:
        """One call a step on one server (each call is a full step); on a cluster, where a
        call holds the keys of one slot (often one or two), as many calls as hold about
        a full step's keys: one call each held back by the pacing would crawl."""
        if self.slot_of is None or not sizes:
            return 1
        per_call = max(1.0, sum(sizes) / len(sizes))
        return max(1, int(self.sizer.size / per_call))

    async def _run(self, calls: list[Command], step: int = 1) -> list[Any]:
        async def sent(part: Sequence[Command]) -> list[Any]:
            # steps paced (per node on a cluster): a round of calls written at once held
            # the server back to back for the whole round (16 calls of up to 0.4 ms, or
            # up to 512 one-slot calls on a cluster) beside the game
            return await send(self.r, part, step=step, pacer=self.pacer, pacers=self.pacers)

        # a script cache flushed, or a promoted replica that never loaded it: loaded again
        # and the refused steps resent (they rewrite the same values)
        replies = await reloading(self.r, (REPLACE_HASHES,), sent, calls)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def _index_commands(verb: str, members: Sequence[str]) -> list[Command]:
    return [
        (verb, keys.LOCATION_INDEX_KEY, *members[i : i + INDEX_BATCH])
        for i in range(0, len(members), INDEX_BATCH)
    ]


async def _index_members(r: AnyRedis) -> set[str]:
    found: set[str] = set()
    async for member in r.sscan_iter(keys.LOCATION_INDEX_KEY, count=1000):
        found.add(str(member))
    return found


async def write_online(
    r: AnyRedis,
    to_write: Sequence[Item],
    to_remove: Sequence[str],
    version_fields: Flat,
    *,
    location_ids: Sequence[str],
    stop: StopToken,
    lease: Lease | None,
    progress: Progress | None = None,
    previous: str | None = None,
) -> OnlineReport:
    """Steps 1-4 of the module docstring. Raises :class:`Interrupted` (stop),
    :class:`LockLostError` or :class:`UnreachableError` saying how far it got, and that the
    version record still names the previous version."""
    report = OnlineReport(per_slot=is_cluster(r))
    total = len(to_write) + len(to_remove) + 1
    writer = _Writer(r, stop=stop, lease=lease, progress=progress, total=total, report=report)
    try:
        await writer.load()
        await writer.replace(to_write, "written")
        present = await _index_members(r)
        wanted = set(location_ids)
        await writer.plain(
            _index_commands("SADD", sorted(wanted - present)), "new keys written, index not"
        )
        await writer.plain(
            _index_commands("SREM", sorted(present - wanted)), "new keys written and indexed"
        )
        await writer.replace([(key, ()) for key in to_remove], "removals")
        await writer.replace([(keys.GAMEDATA_VERSION_KEY, version_fields)], "version record")
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise _cut_off(exc, writer.done, total, previous) from exc
    report.mixed_window_s = (
        time.perf_counter() - writer.first_sent if writer.first_sent is not None else 0.0
    )
    return report


def _cut_off(exc: BaseException, done: int, total: int, previous: str | None) -> OpsError:
    """The error for a run cut off part-way: a lost connection or a failover that outlasted
    ``FAILOVER_WAIT_S`` (exit 4), or a server refusal such as an ACL denial or OOM, under
    its own class and exit code; either way saying how far the run got."""
    after = (
        f"with {done:,} of {total:,} keys written; the version record still names "
        f"{(previous or 'none')[:12]} unless the last step reached it; readers may see a mix "
        "until preload --online runs again (it writes what still differs)"
    )
    detail = {"cut_off": True, "keys_done": done, "online": True}
    if isinstance(exc, (*FAILOVER_ERRORS, OSError, TimeoutError)) and not isinstance(
        exc, NOT_FAILOVER
    ):
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        return UnreachableError(
            f"preload --online cut off: the connection to Redis was lost ({reason}) {after}",
            detail=detail,
        )
    refused = translate(exc, "the server")
    return type(refused)(
        f"preload --online cut off: {refused.message} {after}", hint=refused.hint, detail=detail
    )


async def verify_online(
    r: AnyRedis,
    encoded: Encoded,
    removed: Sequence[str],
    location_ids: Sequence[str],
    version: str,
    report: OnlineReport,
) -> dict[str, Any]:
    """Step 5: re-read every key of the dataset (HGETALL, in paced steps) and compare it with
    what was written; removed keys must be gone, the index must name exactly the
    locations, the version record must name ``version``. Raises :class:`DataLostError`
    naming what differs, per kind."""
    wanted = [
        (kind.label, key, flat)
        for kind, mappings in encoded.items()
        for key, flat in mappings.items()
    ]
    commands: list[Command] = [("HGETALL", key) for _, key, _ in wanted]
    commands += [("EXISTS", key) for key in removed]
    commands.append(("HMGET", keys.GAMEDATA_VERSION_KEY, "content_hash"))
    replies: list[Any] = []
    pacer = pacer_of(r)  # one for the whole pass (one server)
    pacers: dict[str, Pacer] = {}  # the same per node (cluster)
    for start in range(0, len(commands), READ_BATCH):
        part = commands[start : start + READ_BATCH]
        replies.extend(await send(r, part, reads=True, pacer=pacer, pacers=pacers))
    differs: dict[str, int] = {}
    for (label, _, flat), reply in zip(wanted, replies, strict=False):
        if pairs(reply) != as_mapping(flat):
            differs[label] = differs.get(label, 0) + 1
    lingering = sum(1 for reply in replies[len(wanted) : -1] if reply == 1)
    version_ok = isinstance(replies[-1], list) and replies[-1][:1] == [version]
    index_ok = await _index_members(r) == set(location_ids)
    report.verified_keys = len(wanted) - sum(differs.values())
    checked = {"verified_keys": report.verified_keys, "verify": "content"}
    if not differs and not lingering and version_ok and index_ok:
        return checked
    parts = [f"{label} {n:,}" for label, n in differs.items()]
    if lingering:
        parts.append(f"{lingering:,} removed key(s) back")
    if not index_ok:
        parts.append("the location index")
    if not version_ok:
        parts.append("the version record")
    raise DataLostError(
        f"preload --online wrote version {version[:12]} but the verify pass found "
        f"{', '.join(parts)} differing from what was written (another writer, or eviction)",
        hint="preload --online again (it writes what still differs); echoes-ops audit names "
        "other writers, echoes-ops doctor the eviction policy",
        detail={"committed": True, "differs": differs, "lingering": lingering},
    )
