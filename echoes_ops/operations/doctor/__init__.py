"""Doctor: check the tier against what the design needs, each check with a verdict, why
it matters and how to fix it.

Verdicts, from best to worst: ``ok``, ``unknown`` (the check could not run: a command is
disabled, renamed or denied by ACL, a source is not configured; ``why`` says which),
``warn`` and ``fail``. A check never crashes the run: a Redis error reply (NOPERM, unknown
command) turns that check into ``unknown``. Only losing the connection ends the run.

Reads are bounded like every other view: one SCAN pass (COUNT 1000) with pipelined TTL
reads for sessions, inventories and locks, a pipelined sample of sessions for clock skew,
CONFIG GET of single parameters, INFO, TIME, CLIENT LIST and the worker views. The TTL reads
count as keyspace hits in Redis' statistics.

The checks live in one module per family (:mod:`.server`, :mod:`.data`, :mod:`.network`,
:mod:`.identity`, :mod:`.clock`, :mod:`.flag`); :data:`CHECKS` below is the one list of them, in the order
they run and are reported.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract.pubsub import PubSubMode
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.clusterinfo import first_primary, server_time, tier_info
from echoes_ops.operations.doctor import (
    clock,
    cluster,
    data,
    flag,
    identity,
    network,
    pubsub,
    server,
)
from echoes_ops.operations.doctor.base import (
    RANK,
    VERDICTS,
    Check,
    ConfigReader,
    Context,
    DoctorReport,
    Finding,
    refused,
)
from echoes_ops.operations.doctor.network import address_scope, parse_buffer_limits, parse_bytes
from echoes_ops.operations.doctor.server import parse_version
from echoes_ops.operations.keyspace import walk_keyspace
from echoes_ops.operations.tiermap import worker_liveness


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    run: Callable[[Context], Awaitable[Finding]]


CHECKS: Final = (
    CheckSpec("redis_version", "Redis version", server.redis_version),
    CheckSpec("eviction_policy", "Eviction policy", server.eviction_policy),
    CheckSpec("memory_headroom", "Memory headroom", server.memory_headroom),
    CheckSpec("persistence", "Persistence", server.persistence),
    CheckSpec("static_data", "Static data", data.static_data),
    CheckSpec("keys_without_ttl", "Keys without TTL", data.keys_without_ttl),
    CheckSpec("dead_workers", "Dead workers", data.dead_workers),
    CheckSpec("pubsub_output_buffer", "Pub/sub output buffer limit", network.pubsub_output_buffer),
    CheckSpec("network_exposure", "Network exposure", network.network_exposure),
    CheckSpec("acl_user", "ACL user", identity.acl_user),
    CheckSpec("clock_skew", "Clock skew", clock.clock_skew),
    CheckSpec("redis_enabled", "REDIS_ENABLED agreement", flag.redis_enabled),
    CheckSpec("pubsub_mode", "Pub/sub mode agreement", pubsub.pubsub_mode),
    CheckSpec("cluster", "Redis Cluster", cluster.cluster),
)
CHECK_IDS: Final = tuple(spec.id for spec in CHECKS)

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "RANK",
    "VERDICTS",
    "Check",
    "CheckSpec",
    "DoctorReport",
    "address_scope",
    "doctor",
    "parse_buffer_limits",
    "parse_bytes",
    "parse_version",
]


async def doctor(
    r: AnyRedis,
    *,
    gamedata: GameData | None,
    gamedata_problem: str | None = None,
    database_url: str | None = None,
    env_file: str | None = None,
    rng: random.Random | None = None,
    pubsub_mode: PubSubMode = "classic",
) -> DoctorReport:
    """Run every check of :data:`CHECKS` and return them in that order."""
    started = time.perf_counter()
    info: dict[str, Any] | None
    info_error = None
    try:
        info = await tier_info(r)
    except ResponseError as exc:
        info, info_error = None, f"INFO {refused(exc)}"
    now = await server_time(r)
    walk = await walk_keyspace(
        r,
        ttl_all_families=("sessions", "inventories", "locks"),
        ttl_sample=clock.SKEW_SESSION_SAMPLE,
        ttl_sample_families=("sessions",),
        rng=rng,
    )
    ctx = Context(
        r,
        info,
        info_error,
        ConfigReader(await first_primary(r)),
        server_time=now,
        walk=walk,
        liveness=await worker_liveness(r, walk.worker_ids),
        gamedata=gamedata,
        gamedata_problem=gamedata_problem,
        database_url=database_url,
        env_file=env_file,
        pubsub_mode=pubsub_mode,
    )
    checks = []
    for spec in CHECKS:
        try:
            result = await spec.run(ctx)
        except ResponseError as exc:
            result = Finding(
                "unknown",
                f"could not run: {refused(exc)}",
                "a command this check needs was refused",
                "grant the command to the user echoes-ops connects as, or check by hand",
            )
        checks.append(Check(spec.id, spec.title, **vars(result)))
    return DoctorReport(checks, ctx.server_time, time.perf_counter() - started)
