"""Running reconcile's repairs (see :mod:`echoes_ops.operations.reconcile`).

Each repair is one small script that re-checks its condition in Redis before it changes
anything. They are sent in batches, each batch one pipelined round trip (was one round trip
per repair: 100,000 dead workers' sessions took 100,000 of them), its size set by
:class:`~echoes_ops.client.budget.StepBudget` from how long the batches take, so that a
batch holds the server about as long as a walk step does. A stop is honoured between
batches. A failure partway keeps what already ran: the counts are in the report (and so in
the audit record) before the error is raised. On Redis Cluster the cross-slot repairs run
one at a time as calls of one key each (``reconcile_cluster.apply_one``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from redis.exceptions import ResponseError

from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import bulk_scripts
from echoes_ops.client.connect import AnyRedis
from echoes_ops.operations.drift_report import AUDIT_IDS, REPAIR_ORDER, ReconcileReport
from echoes_ops.operations.reconcile_cluster import CROSS_SLOT_KINDS, apply_one, is_cluster
from echoes_ops.operations.stop import StopToken

Call = tuple[str, list[str], list[str], str]  # (script, keys, args, target)
FIRST_BATCH = 20  # repairs in the first batch; later ones sized by the time batches take


async def apply_repairs(
    r: AnyRedis,
    report: ReconcileReport,
    calls_of: Callable[[str], Sequence[Call]],
    kinds: set[str],
    stop: StopToken,
) -> None:
    """Run the repairs of ``kinds`` (``calls_of(kind)``) in dependency order: dead workers
    first, then presence, then TTLs. A stop between batches raises :class:`Interrupted`
    saying how many ran; any other failure leaves the counts of what ran in ``report``."""
    work = [(kind, calls_of(kind)) for kind in REPAIR_ORDER if kind in kinds]
    total = sum(len(calls) for _, calls in work)
    ran = 0
    budget = StepBudget(FIRST_BATCH, low=1, high=1000)
    shas: dict[str, str] = {}
    try:
        for kind, calls in work:
            one_at_a_time = is_cluster(r) and kind in CROSS_SLOT_KINDS
            for batch in _batches(calls, budget, 1 if one_at_a_time else None):
                if stop():
                    _multi_fixed(report)
                    fixed = {name: k.fixed for name, k in report.kinds.items() if k.fixed}
                    raise stop.stopped(
                        f"repaired {ran:,} of {total:,} (the rest left as found)",
                        {"repairs_run": ran, "repairs_planned": total, "fixed": fixed},
                    )
                error = None
                if one_at_a_time:
                    _, key_list, args, _ = batch[0]
                    done = [await apply_one(r, kind, key_list, args)]
                else:
                    done, error = await _run_batch(r, batch, shas, budget)
                ran += len(batch)
                _count(report, kind, batch, done)
                if error is not None:
                    raise error  # what ran before it (this batch's others too) is counted
    finally:
        _multi_fixed(report)


def _batches(
    calls: Sequence[Call], budget: StepBudget, size: int | None
) -> Iterator[Sequence[Call]]:
    start = 0
    while start < len(calls):
        step = size or budget.size
        yield calls[start : start + step]
        start += step


async def _run_batch(
    r: AnyRedis, batch: Sequence[Call], shas: dict[str, str], budget: StepBudget
) -> tuple[list[int], ResponseError | None]:
    """``batch`` as one pipelined round trip of EVALSHA: per call, 1 if it changed
    something, and the first error reply (every other call of the batch has run)."""
    started = time.perf_counter()
    replies = await bulk_scripts(r, [(text, ks, args) for text, ks, args, _ in batch], shas)
    budget.observe(len(batch), time.perf_counter() - started)
    errors = [reply for reply in replies if isinstance(reply, ResponseError)]
    return [_changed(reply) for reply in replies], errors[0] if errors else None


def _changed(reply: Any) -> int:
    if isinstance(reply, ResponseError):
        return 0
    if isinstance(reply, list):
        return int(reply[0]) + int(reply[1])
    return int(reply)


def _count(report: ReconcileReport, kind: str, batch: Sequence[Call], done: list[int]) -> None:
    found = report.kinds[kind]
    for call, changed in zip(batch, done, strict=True):
        if changed:
            found.fixed += 1
            if len(found.repaired) < AUDIT_IDS:
                found.repaired.append(call[3])


def _multi_fixed(report: ReconcileReport) -> None:
    # a misplaced member removed means the player is no longer in several sets
    report.kinds["multi_location"].fixed = min(
        report.kinds["multi_location"].found, report.kinds["location_mismatch"].fixed
    )
