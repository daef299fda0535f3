"""What ``metrics serve`` exposes, read at most once per interval whatever the scrape rate.

A scrape asks :meth:`MetricsSource.exposition`. The tier's readings (a ``stats`` snapshot and
the domain state, each a walk over the keyspace) are cached: a reading younger than
``interval`` seconds (counted from when it started) is served as it is; an older one is read
again once, and scrapes arriving meanwhile wait for that same read. The drift detector runs
on its own cadence in the background (``drift_interval``), never inside a scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from echoes_ops.config import PgTimeouts, RedisTarget
from echoes_ops.errors import OpsError
from echoes_ops.operations.metrics.domain import (
    DiskVersion,
    DomainSnapshot,
    DriftReading,
    read_domain,
    read_drift,
)
from echoes_ops.operations.metrics.exposition import domain_exposition, drift_exposition
from echoes_ops.operations.stats.model import StatsSnapshot
from echoes_ops.operations.stats.prometheus import Exposition, stats_exposition

T = TypeVar("T")


class Cached(Generic[T]):
    """The value of ``read()``, read again at most once per ``interval`` seconds (counted
    from the start of the previous read); callers during a read share it, and a read that
    failed is not retried before the interval is over either."""

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.interval = interval
        self._clock = clock
        self._task: asyncio.Future[T] | None = None
        self._started = 0.0
        self.reads = 0

    def age(self) -> float | None:
        """Seconds since the reading being served started; None before the first."""
        return None if self._task is None else self._clock() - self._started

    async def get(self) -> T:
        task = self._task
        if task is None or (task.done() and self._clock() - self._started >= self.interval):
            self._started = self._clock()
            self.reads += 1
            task = self._task = asyncio.ensure_future(self._read())
        return await asyncio.shield(task)


@dataclass(frozen=True)
class MetricsConfig:
    target: RedisTarget
    database_url: str | None = None
    env_file: str | None = None
    gamedata_dir: Path | None = None
    interval: float = 30.0
    drift_interval: float = 300.0  # 0: never run the drift detector
    keyspace: bool = True  # the stats key walk (families, memory, TTL buckets)
    operator: str = "echoes-ops-metrics"
    flag_timeouts: PgTimeouts | None = None  # None: the flag commands' default


@dataclass(frozen=True)
class Reading:
    stats: StatsSnapshot | None
    stats_error: OpsError | None  # why ``stats`` is None (Redis unreachable, ...)
    domain: DomainSnapshot


async def read_stats(
    target: RedisTarget, *, keyspace: bool
) -> tuple[StatsSnapshot | None, OpsError | None]:
    from echoes_ops.client.connect import open_redis
    from echoes_ops.operations.stats.snapshot import snapshot

    try:
        async with open_redis(target) as r:
            return await snapshot(r, keyspace=keyspace), None
    except OpsError as exc:
        return None, exc


async def read_all(config: MetricsConfig, disk: DiskVersion | None = None) -> Reading:
    """One reading of everything but drift: the stats snapshot, then the domain state."""
    stats, error = await read_stats(config.target, keyspace=config.keyspace)
    domain = await read_domain(
        config.target,
        database_url=config.database_url,
        env_file=config.env_file,
        disk=disk,
        operator=config.operator,
        flag_timeouts=config.flag_timeouts,
    )
    return Reading(stats, error, domain)


def reading_exposition(reading: Reading, drift: DriftReading | None = None) -> Exposition:
    """Every family of a reading (and of a drift detection), in one exposition."""
    out = Exposition()
    if reading.stats is not None:
        out.extend(stats_exposition(reading.stats))
    out.extend(domain_exposition(reading.domain))
    out.extend(drift_exposition(drift))
    return out


class MetricsSource:
    """The cached readings and the drift loop of one ``metrics serve``."""

    def __init__(self, config: MetricsConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        disk = DiskVersion(config.gamedata_dir) if config.gamedata_dir is not None else None
        self._disk = disk
        self.readings: Cached[Reading] = Cached(
            lambda: read_all(config, disk), config.interval, clock=clock
        )
        self.drift: DriftReading | None = None
        self.drift_runs = 0

    async def exposition(self) -> Exposition:
        reading = await self.readings.get()
        out = reading_exposition(reading, self.drift)
        out.metric(
            "exporter_refreshes_total",
            "counter",
            "Readings of the tier this exporter made (at most one per --interval).",
            self.readings.reads,
        )
        out.metric(
            "exporter_drift_runs_total",
            "counter",
            "Drift detections this exporter ran (one per --drift-interval).",
            self.drift_runs,
        )
        age = self.readings.age()
        if age is not None:
            out.metric(
                "exporter_reading_age_seconds",
                "gauge",
                "Age of the reading served (at most --interval plus a reading's duration).",
                age,
            )
        return out

    async def run_drift(self, stop: asyncio.Event) -> None:
        """Detect drift now and every ``drift_interval`` seconds until ``stop`` is set."""
        every = self.config.drift_interval
        if every <= 0:
            return
        while not stop.is_set():
            self.drift_runs += 1
            self.drift = await read_drift(self.config.target)
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except TimeoutError:
                continue
