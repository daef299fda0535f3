"""The one-screen status: where it talks to (target, topology, the named environment), the
REDIS_ENABLED switch as its source of truth holds it with the workers' modes, the server,
the gamedata version and counts of the tier's state."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.topology import describe
from echoes_ops.config import PgTimeouts, RedisTarget, switch_timeouts
from echoes_ops.operations.cluster_health import ClusterHealth, cluster_health
from echoes_ops.operations.clusterinfo import tier_info
from echoes_ops.operations.flags import LazyRedis, flag_status
from echoes_ops.operations.flags.status import FlagHeadline
from echoes_ops.operations.overview import STALE_AFTER
from echoes_ops.operations.static_data import read_version, version_json
from echoes_ops.operations.tiercount import count_tier
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness


@dataclass
class ServerInfo:
    version: str
    mode: str
    role: str
    uptime_s: int
    used_memory: int
    used_memory_human: str
    maxmemory: int
    maxmemory_policy: str
    connected_clients: int
    keys: int


@dataclass
class TierCounts:
    sessions: int
    locations_with_players: int
    players_in_locations: int
    workers: int
    workers_alive: int
    locks: int


@dataclass
class Target:
    """What the command talks to: the redacted URL, the topology and the environment's name."""

    url: str  # without its password
    topology: str  # "standalone", "sentinel <master>", "cluster 3 primaries / 3 replicas"
    environment: str | None  # ECHOES_OPS_ENVIRONMENT (None: not named)


@dataclass
class Status:
    server: ServerInfo
    gamedata: dict[str, str]
    counts: TierCounts
    checked_at: float
    target: Target | None = None
    redis_enabled: FlagHeadline | None = None
    cluster: ClusterHealth | None = None  # per node, on Redis Cluster

    @property
    def problems(self) -> list[str]:
        return self.cluster.problems if self.cluster is not None else []

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "gamedata": version_json(self.gamedata),
            "cluster": self.cluster.as_dict() if self.cluster is not None else None,
        }


async def server_info(r: AnyRedis) -> ServerInfo:
    """INFO of the server, or of every primary of a cluster merged (totals)."""
    info = await tier_info(r)
    keyspace = sum(
        int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
    )
    return ServerInfo(
        version=str(info.get("redis_version", "?")),
        mode=str(info.get("redis_mode", "standalone")),
        role=str(info.get("role", "?")),
        uptime_s=int(info.get("uptime_in_seconds", 0)),
        used_memory=int(info.get("used_memory", 0)),
        used_memory_human=str(info.get("used_memory_human", "?")),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        connected_clients=int(info.get("connected_clients", 0)),
        keys=keyspace,
    )


async def _tier(r: AnyRedis) -> tuple[TierCounts, dict[str, WorkerLiveness]]:
    tier = await count_tier(r, stale_after=STALE_AFTER)
    members = list(tier.presence.values())
    liveness = await worker_liveness(r, tier.worker_metas | tier.worker_connections)
    return TierCounts(
        sessions=len(tier.sessions),
        locations_with_players=sum(1 for m in members if m > 0),
        players_in_locations=sum(members),
        workers=len(liveness),
        workers_alive=sum(1 for w in liveness.values() if w.alive),
        locks=len(tier.lock_keys),
    ), liveness


async def topology(r: AnyRedis, server: ServerInfo) -> str:
    """The one-line topology (client/topology.py); a cluster node reached as one server
    says so, since only its own slots' keys are then seen."""
    label = (await describe(r)).label
    if server.mode == "cluster" and not isinstance(r, RedisCluster):
        return f"{label} (the server is a cluster node: set REDIS_CLUSTER=true)"
    return label


async def status(
    r: AnyRedis,
    *,
    target: RedisTarget | None = None,
    environment: str | None = None,
    database_url: str | None = None,
    env_file: str | None = None,
    flag_timeouts: PgTimeouts | None = None,
) -> Status:
    """One reading. With ``target``, says where it talked to; REDIS_ENABLED comes from
    PostgreSQL (``database_url``), the source of truth, never from the Redis mirror alone."""
    server = await server_info(r)
    counts, liveness = await _tier(r)
    flag = await flag_status(
        database_url,
        env_file=env_file,
        redis=LazyRedis.of(r),
        liveness=liveness,
        timeouts=flag_timeouts or switch_timeouts(),
    )
    return Status(
        server=server,
        gamedata=await read_version(r),
        counts=counts,
        checked_at=time.time(),
        target=Target(target.display, await topology(r, server), environment)
        if target is not None
        else None,
        redis_enabled=flag.headline,
        cluster=await cluster_health(r),
    )
