"""Operational flags (``REDIS_ENABLED`` first): read, set, and check where they stand.

- :mod:`.envfile`: the deployment's env file (parse, read, plan an edit, replace atomically).
- :mod:`.store`: values in PostgreSQL, the source of truth, and :func:`set_flag`, which
  writes PostgreSQL, then the env file, then the Redis mirror.
- :mod:`.status`: :func:`flag_status`, every source and live worker in one reading.
- :mod:`.rowlock`: waiting for a flag's row, bounded, naming who holds it.
- :mod:`.link`: Redis opened only when needed (flags work while Redis is down).
"""

from echoes_ops.operations.flags.envfile import EnvChange, EnvPlan, env_value, plan_env_update
from echoes_ops.operations.flags.link import (
    FAILED,
    OK,
    SKIPPED,
    UNCHANGED,
    UNREACHABLE,
    WOULD_CHANGE,
    FlagsAuditLog,
    LazyRedis,
)
from echoes_ops.operations.flags.rowlock import Blocker, FlagLockedError
from echoes_ops.operations.flags.status import FlagStatus, SourceValue, WorkerFlagView, flag_status
from echoes_ops.operations.flags.store import (
    FlagValue,
    SetResult,
    TargetOutcome,
    get_flag,
    list_flags,
    set_flag,
)

__all__ = [
    "FAILED",
    "OK",
    "SKIPPED",
    "UNCHANGED",
    "UNREACHABLE",
    "WOULD_CHANGE",
    "Blocker",
    "EnvChange",
    "EnvPlan",
    "FlagLockedError",
    "FlagStatus",
    "FlagValue",
    "FlagsAuditLog",
    "LazyRedis",
    "SetResult",
    "SourceValue",
    "TargetOutcome",
    "WorkerFlagView",
    "env_value",
    "flag_status",
    "get_flag",
    "list_flags",
    "plan_env_update",
    "set_flag",
]
