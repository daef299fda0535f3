"""The tier's domain state for monitoring, read through the operations that show it to
operators: the tier count of ``status``, the flag status of ``flags status``, ``locks list``,
worker liveness, the gamedata version record, the warmup's audit records and reconcile's
drift detector. Nothing here counts anything a second way.

A reading never raises for an unreachable source: Redis down leaves the Redis parts empty
(with the error), and the flag's PostgreSQL and env-file sources are still read (the switch
matters most while Redis is down).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from redis.exceptions import RedisError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.errors import translate
from echoes_ops.config import PgTimeouts, RedisTarget
from echoes_ops.contract import flags as flag_contract
from echoes_ops.contract import keys
from echoes_ops.errors import OpsError
from echoes_ops.operations.audit import AuditLog, AuditRecord
from echoes_ops.operations.audit_read import AuditQuery, read_audit
from echoes_ops.operations.flags import FlagStatus, LazyRedis, flag_status
from echoes_ops.operations.flags.store import FLAG_TIMEOUTS
from echoes_ops.operations.locks import LockInfo, list_locks
from echoes_ops.operations.overview import TierSummary, tier_summary
from echoes_ops.operations.reconcile import KINDS, find_drift
from echoes_ops.operations.static_data import read_version
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness

WARMUP_ACTION: Final = "warmup"
WARMUP_LOOKBACK: Final = 50  # audit records read to find the last successful warmup
WARMUP_RESULTS: Final = ("ok", "partial", "failed", "interrupted")


@dataclass(frozen=True)
class WarmupRuns:
    """The last warmup (not a dry run) in the audit trail, and the last successful one."""

    last_at: float | None
    last_result: str | None  # one of WARMUP_RESULTS
    last_elapsed_s: float | None  # None when the record does not say (failed runs)
    last_ok_at: float | None
    source: str  # "postgresql" or "redis": where the records were read


def warmup_runs(records: list[AuditRecord], source: str) -> WarmupRuns:
    """From audit records of the warmup, newest first."""
    runs = [r for r in records if not r.dry_run]
    if not runs:
        return WarmupRuns(None, None, None, None, source)
    last = runs[0]
    detail = last.detail or {}
    result = last.result
    if result == "ok" and detail.get("partial"):
        result = "partial"
    elapsed = detail.get("elapsed_s")
    ok_at = next(
        (r.at for r in runs if r.result == "ok" and not (r.detail or {}).get("partial")), None
    )
    return WarmupRuns(
        last_at=last.at,
        last_result=result if result in WARMUP_RESULTS else "failed",
        last_elapsed_s=float(elapsed) if isinstance(elapsed, int | float) else None,
        last_ok_at=ok_at,
        source=source,
    )


@dataclass
class DiskVersion:
    """The content hash of the gamedata folder, computed again only when a file in it
    changes (size, mtime or name), so a frequent refresh does not parse YAML every time."""

    folder: Path
    version: str | None = None
    error: str | None = None
    _signature: tuple[tuple[str, int, int], ...] | None = None

    def read(self) -> DiskVersion:
        from echoes_ops.gamedata import load_gamedata
        from echoes_ops.operations.static_data import content_hash, encode_gamedata

        try:
            signature = tuple(
                sorted(
                    (str(p), p.stat().st_mtime_ns, p.stat().st_size)
                    for p in self.folder.rglob("*")
                    if p.is_file()
                )
            )
        except OSError as exc:
            self.version, self.error, self._signature = None, str(exc), None
            return self
        if signature == self._signature and (self.version or self.error):
            return self
        self._signature = signature
        try:
            self.version = content_hash(encode_gamedata(load_gamedata(self.folder)))
            self.error = None
        except OpsError as exc:
            self.version, self.error = None, str(exc)
        return self


@dataclass(frozen=True)
class LockCounts:
    held: int
    without_ttl: int
    dead_owner: int

    @classmethod
    def of(cls, locks: list[LockInfo]) -> LockCounts:
        return cls(
            held=len(locks),
            without_ttl=sum(1 for lock in locks if lock.no_ttl),
            dead_owner=sum(1 for lock in locks if lock.alive is False),
        )


@dataclass
class DomainSnapshot:
    """One reading of the tier's domain state (the Redis parts None when Redis failed)."""

    taken_at: float
    elapsed_s: float
    flags: FlagStatus
    tier: TierSummary | None = None
    workers: dict[str, WorkerLiveness] | None = None
    locks: LockCounts | None = None
    gamedata_loaded: dict[str, str] | None = None
    gamedata_disk: DiskVersion | None = None
    warmup: WarmupRuns | None = None
    warmup_error: str | None = None
    audit_unsynced: int | None = None  # stream records PostgreSQL has not taken yet
    redis_error: str | None = None

    @property
    def redis_up(self) -> bool:
        return self.redis_error is None and self.tier is not None


async def read_domain(
    target: RedisTarget | None,
    *,
    database_url: str | None,
    env_file: str | None,
    disk: DiskVersion | None = None,
    operator: str = "echoes-ops-metrics",
    flag_timeouts: PgTimeouts | None = None,
) -> DomainSnapshot:
    """Read the domain state; Redis failures are kept in ``redis_error``, not raised."""
    started = time.perf_counter()
    async with LazyRedis(target) as lazy:
        r = await lazy.get()
        parts: dict[str, Any] = {}
        redis_error = lazy.error if r is None else None
        if r is not None:
            try:
                parts = await _redis_parts(r)
            except (RedisError, OSError, TimeoutError) as exc:
                where = target.display if target is not None else "Redis"
                redis_error = str(translate(exc, where))
        flags = await flag_status(
            database_url,
            flag_contract.REDIS_ENABLED,
            env_file=env_file,
            redis=lazy,
            liveness=parts.get("workers"),  # the workers this reading already read
            timeouts=flag_timeouts or FLAG_TIMEOUTS,
        )
        warmup, warmup_error = await _warmup(
            r if redis_error is None else None, database_url, operator
        )
    return DomainSnapshot(
        taken_at=time.time(),
        elapsed_s=time.perf_counter() - started,
        flags=flags,
        gamedata_disk=disk.read() if disk is not None else None,
        warmup=warmup,
        warmup_error=warmup_error,
        redis_error=redis_error,
        **parts,
    )


async def _redis_parts(r: AnyRedis) -> dict[str, Any]:
    tier = await tier_summary(r)
    return {
        "tier": tier,
        "workers": await worker_liveness(r, set(tier.worker_ids)),
        "locks": LockCounts.of(await list_locks(r)),
        "gamedata_loaded": await read_version(r),
        "audit_unsynced": int(await r.scard(keys.AUDIT_UNSYNCED_KEY)),
    }


async def _warmup(
    r: AnyRedis | None, database_url: str | None, operator: str
) -> tuple[WarmupRuns | None, str | None]:
    """The warmup's audit records, read-only: from PostgreSQL alone when configured (the
    audit reader given both stores would also copy the stream's unsynced records in, a
    write), else, or when PostgreSQL fails, from the Redis stream."""
    query = AuditQuery(limit=WARMUP_LOOKBACK, action=WARMUP_ACTION)
    problem: BaseException | None = None
    for log in (
        AuditLog(operator=operator, database_url=database_url) if database_url else None,
        AuditLog(operator=operator, redis=r) if r is not None else None,
    ):
        if log is None:
            continue
        try:
            read = await read_audit(log, query)
        except (OpsError, RedisError, OSError) as exc:
            problem = exc
            continue
        return warmup_runs(read.records, read.source), None
    return None, str(problem) if problem else "no audit source (PostgreSQL or Redis)"


@dataclass(frozen=True)
class DriftReading:
    """What reconcile's detector found (dry run), per kind."""

    taken_at: float
    elapsed_s: float
    kinds: dict[str, int] = field(default_factory=dict)
    error: str | None = None


async def read_drift(target: RedisTarget) -> DriftReading:
    """Run reconcile's detector once (read-only); an unreachable Redis is kept in ``error``."""
    from echoes_ops.client.connect import open_redis

    started = time.perf_counter()
    try:
        async with open_redis(target) as r:
            plan = await find_drift(r)
    except OpsError as exc:
        return DriftReading(time.time(), time.perf_counter() - started, {}, str(exc))
    found = {kind: plan.report.kinds[kind].found for kind in KINDS}
    return DriftReading(time.time(), time.perf_counter() - started, found)
