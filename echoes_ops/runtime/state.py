"""A reference worker's options, connections and counters: plain data, shared by the
worker and the parts it delegates to (:mod:`echoes_ops.runtime.flags_listener`)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from echoes_ops.contract import envelopes, keys
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode
from echoes_ops.contract.session import Session
from echoes_ops.runtime import fallback


@dataclass
class WorkerOptions:
    worker_id: str
    location_ids: Sequence[str] = ()
    heartbeat_interval: float = keys.WORKER_HEARTBEAT_INTERVAL
    meta_ttl: int = keys.WORKER_META_TTL
    spawn_interval: float = 30.0
    spawn_lock_ttl: float = 60.0
    run_spawn_task: bool = True
    # a silent pub/sub connection is PINGed after idle_ping seconds and declared dead (then
    # reconnected) after dead_after seconds without hearing anything, the pong included
    idle_ping: float = 2.0
    dead_after: float = 6.0
    max_backoff: float = 2.0
    # the pub/sub listener retries at least this often (capped by max_backoff): whatever is
    # published while it is away is lost, so a promoted replica (a cluster failover) or a
    # restarted server is caught within this; an attempt on a dead node fails fast
    resubscribe_backoff: float = 0.5
    routing: Literal["local", "plan"] = "local"
    # classic (PUBLISH/SUBSCRIBE everywhere) or sharded (SPUBLISH/SSUBSCRIBE for location
    # and player channels; contract/pubsub.py); advertised in the meta for doctor
    pubsub_mode: PubSubMode = DEFAULT_MODE
    # an inbox stands in for a WebSocket, which keeps nothing: a short one keeps the garbage
    # collector's work (and its pauses) small (benchmarks/pubsub.py: 1000 -> 32 took p99.9
    # from 13 ms to 2.3 ms and the per-worker ceiling from 3,500 to 20,000 msg/s)
    inbox_size: int = 32
    seen_ids: int = 200_000
    # keep every received msg_id and latency sample (simulate and benchmarks need them);
    # off for a long-running worker, whose memory would otherwise grow with traffic
    record_deliveries: bool = False
    # REDIS_ENABLED switch (runtime/flags_listener.py): LISTEN here, read here in fallback
    database_url: str | None = None
    player_query: str = fallback.PLAYER_QUERY
    inventory_query: str = fallback.INVENTORY_QUERY


@dataclass
class Delivery:
    envelope: envelopes.Envelope
    received_at: float


@dataclass
class Connection:
    """A connected player on this worker (an in-memory WebSocket stand-in)."""

    session: Session
    inbox: deque[Delivery]
    delivered: int = 0

    @property
    def character_id(self) -> int:
        return self.session.character_id

    @property
    def location_id(self) -> str:
        return self.session.location_id or ""


@dataclass
class WorkerStats:
    received: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    duplicates: int = 0
    undecodable: int = 0
    reconnects: int = 0
    gap_seconds: float = 0.0
    # (lost, resubscribed) epoch seconds of each pub/sub outage (simulate's failover window)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    spawn_runs: int = 0
    spawn_skipped: int = 0
    lock_lost: int = 0
    last_disconnect: str | None = None  # why the last pub/sub connection was lost
    latencies_ms: list[float] = field(default_factory=list)
    received_ids: set[str] = field(default_factory=set)
    redis_reads: int = 0  # read_player/read_inventory served by Redis
    postgres_reads: int = 0  # ... by PostgreSQL (fallback mode, or a Redis cache miss)
    flag_changes: int = 0  # REDIS_ENABLED switches applied
    flag_updates_ignored: int = 0  # duplicate, older or malformed flag updates

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": dict(self.received),
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "reconnects": self.reconnects,
            "gap_seconds": round(self.gap_seconds, 3),
            "gaps": [(round(lost, 3), round(back, 3)) for lost, back in self.gaps],
            "spawn_runs": self.spawn_runs,
            "spawn_skipped": self.spawn_skipped,
            "lock_lost": self.lock_lost,
            "last_disconnect": self.last_disconnect,
            "redis_reads": self.redis_reads,
            "postgres_reads": self.postgres_reads,
            "flag_changes": self.flag_changes,
            "flag_updates_ignored": self.flag_updates_ignored,
        }
