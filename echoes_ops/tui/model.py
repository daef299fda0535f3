"""The dashboard's typed state: what the source returns and what the panels render.

Snapshots hold the operations' own result types (the ones the CLI prints), so one
implementation feeds both faces. Nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from echoes_ops.contract.envelopes import Envelope
from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.operations.cluster_health import ClusterHealth
from echoes_ops.operations.flags import FlagStatus
from echoes_ops.operations.locations import LocationList
from echoes_ops.operations.locks import LockInfo
from echoes_ops.operations.overview import (
    Rates,
    ServerCounters,
    TierSummary,
    WriteAccess,
    rates_between,
)
from echoes_ops.operations.static_data import version_json
from echoes_ops.operations.tiermap import WorkerLiveness, meta_json

HISTORY_SAMPLES: Final = 120  # sparkline points kept (4 minutes at the default 2 s refresh)


@dataclass(frozen=True)
class Snapshot:
    """One fast poll: cheap reads, taken every refresh."""

    taken_at: float  # the source's clock (wall time, epoch seconds)
    counters: ServerCounters
    gamedata: dict[str, str]
    flag: FlagStatus  # REDIS_ENABLED: the truth (PostgreSQL), the other sources, the workers
    workers: list[WorkerLiveness]
    locations: LocationList
    locks: list[LockInfo]
    elapsed_s: float = 0.0
    cluster: ClusterHealth | None = None  # every node and its state (None: one server)

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "server": self.counters.as_dict(),
            "gamedata": version_json(self.gamedata),
            "flag": self.flag.as_dict(),
            "workers": [
                {
                    "id": w.worker_id,
                    "alive": w.alive,
                    "state": w.state,
                    "meta": meta_json(w.meta),
                    "meta_ttl": w.meta_ttl,
                    "client_connected": w.client_connected,
                    "connections": w.connections,
                }
                for w in self.workers
            ],
            "locations": self.locations.as_dict(),
            "locks": [info.as_dict() for info in self.locks],
            "cluster": None if self.cluster is None else self.cluster.as_dict(),
            "elapsed_s": round(self.elapsed_s, 4),
        }


@dataclass(frozen=True)
class TierView:
    """The census counts (a heavier poll, less often)."""

    summary: TierSummary
    taken_at: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary.as_dict(), "taken_at": self.taken_at}


@dataclass(frozen=True)
class DriftView:
    """Counts per kind from reconcile's detector (dry run; the heaviest poll)."""

    counts: dict[str, int]
    taken_at: float
    elapsed_s: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "total": self.total,
            "taken_at": self.taken_at,
            "elapsed_s": round(self.elapsed_s, 4),
        }


@dataclass(frozen=True)
class BroadcastDraft:
    kind: str  # "global", "location", "player"
    target: str  # location id or player id; empty for global
    message: str


@dataclass(frozen=True)
class BroadcastPlan:
    """A previewed broadcast: the exact envelope that will be sent and who listens now."""

    draft: BroadcastDraft
    envelope: Envelope
    preview: BroadcastResult


@dataclass
class History:
    """Rates between successive counter readings, for the sparklines."""

    ops: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))
    publishes: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))
    last: Rates | None = None
    previous: ServerCounters | None = None

    def add(self, counters: ServerCounters) -> None:
        if self.previous is not None and self.previous.run_id != counters.run_id:
            # another server (a restart or a failover): its counters start anew, and so
            # does the history, so the sparklines and their "max over N readings" never
            # mix two servers' rates
            self.ops.clear()
            self.publishes.clear()
            self.last = None
        elif self.previous is not None:
            rates = rates_between(self.previous, counters)
            if rates is not None:
                self.last = rates
                self.ops.append(rates.ops_per_sec)
                self.publishes.append(rates.publish_per_sec)
        self.previous = counters


@dataclass
class DashboardState:
    """Everything the screen shows, updated by the app's message handlers only."""

    target: str
    read_only_flag: bool
    snapshot: Snapshot | None = None
    tier: TierView | None = None
    drift: DriftView | None = None
    history: History = field(default_factory=History)
    connected: bool | None = None  # None: not known yet
    disconnected_since: float | None = None
    last_error: str | None = None
    access: WriteAccess | None = None
    postgres: bool = False  # DATABASE_URL configured
    environment: str | None = None  # ECHOES_OPS_ENVIRONMENT, shown on every screen

    @property
    def read_only(self) -> bool:
        return self.read_only_flag or (self.access is not None and not self.access.writable)

    @property
    def stale(self) -> bool:
        """The data shown is the last known, not current."""
        return self.connected is False

    def mark_connected(self) -> None:
        self.connected = True
        self.disconnected_since = None
        self.last_error = None

    def mark_disconnected(self, at: float, error: str) -> None:
        if self.connected is not False:
            self.disconnected_since = at
        self.connected = False
        self.last_error = error

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "connected": self.connected,
            "disconnected_since": self.disconnected_since,
            "read_only": self.read_only,
            "stale": self.stale,
        }
