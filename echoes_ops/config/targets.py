"""What the layers below get from the settings: where and how to reach Redis
(:class:`RedisTarget`, its pub/sub mode) and how long a PostgreSQL statement or lock wait
may take (:class:`PgTimeouts`; the flag commands' shorter :func:`switch_timeouts`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echoes_ops.config.urls import Secret, redact_url
from echoes_ops.config.walk import DEFAULT_STEP_GATE, DEFAULT_WALK_DUTY

# How the game's per-location and per-player channels are published (contract/pubsub.py)
PubSubMode = Literal["classic", "sharded"]
PUBSUB_MODES: tuple[PubSubMode, ...] = ("classic", "sharded")


@dataclass(frozen=True)
class PgTimeouts:
    """How long one PostgreSQL statement may run, and wait for a lock, before the server
    cancels it (sent as ``statement_timeout`` / ``lock_timeout`` on every connection)."""

    statement: float = 60.0  # seconds
    lock: float = 10.0  # seconds

    def server_settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(max(1, round(self.statement * 1000))),
            "lock_timeout": str(max(1, round(self.lock * 1000))),
        }


FLAGS_TIMEOUT = 3.0  # seconds: the REDIS_ENABLED switch's wait for its row (lock_timeout)


def switch_timeouts(seconds: float = FLAGS_TIMEOUT) -> PgTimeouts:
    """The flag commands' timeouts: they must answer during an incident, so a short wait
    for the flag's row (``lock_timeout``) and twice that for any statement."""
    return PgTimeouts(statement=2 * seconds, lock=seconds)


@dataclass(frozen=True)
class RedisTarget:
    """Everything needed to open a Redis connection. ``url`` never holds a password."""

    url: str
    password: Secret | None = None
    username: str | None = None
    ca_file: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    timeout: float = 5.0
    # a subscribed connection silent this long (PINGed after a third of it) is dead
    dead_after: float = 6.0
    tls_insecure: bool = False  # --insecure: the server certificate is not verified
    # classic (PUBLISH everywhere, the plan's) or sharded (SPUBLISH for location:<id> and
    # player:<id>): see contract/pubsub.py
    pubsub_mode: PubSubMode = "classic"
    # Redis Cluster: ``url``'s host is one seed node, ``cluster_nodes`` the others
    cluster: bool = False
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    # where keyspace walks read on a cluster: "primaries", or "replicas" to spare them
    read_from: str = "primaries"
    walk_duty: float = DEFAULT_WALK_DUTY  # Settings.walk_duty / step_gate (config/walk.py)
    step_gate: str = DEFAULT_STEP_GATE

    @property
    def display(self) -> str:
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel://{hosts}/{self.sentinel_master}"
        return redact_url(self.url)
