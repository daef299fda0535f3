"""Flag values in PostgreSQL (the source of truth), and setting them everywhere.

Setting a flag must work while Redis is down, since that is when ``REDIS_ENABLED=false``
is needed (docs/design.md, decision 8). :func:`set_flag` therefore writes, in this order:

1. PostgreSQL (``echoes_ops.flags``), the source of truth. Its trigger NOTIFYs running
   workers, which switch within a second. If this fails, nothing else is written.
2. The deployment's env file, for restarts: a temporary file in the same directory, fsync,
   ``os.replace`` (readers see the old file or the new one), the directory fsynced; every
   other line and comment kept, the file's mode kept, ``NAME=`` lines replaced in place
   (quotes, ``export`` and trailing comments kept) or one appended. The new file is
   prepared before step 1, so a file that cannot be written stops the command before
   anything changes.
3. Redis, when reachable: the mirror hash ``echoes:flags`` and a ``config_changed`` message
   on ``game:workers`` (the workers' fast path). Unreachable Redis is a warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from echoes_ops.client.postgres import open_postgres
from echoes_ops.config import PgTimeouts, switch_timeouts
from echoes_ops.contract import envelopes, keys
from echoes_ops.contract import flags as contract
from echoes_ops.errors import ConfigError, PostgresError
from echoes_ops.operations.flags import envfile
from echoes_ops.operations.flags.envfile import EnvChange, EnvPlan, plan_env_update
from echoes_ops.operations.flags.link import (
    FAILED,
    OK,
    SKIPPED,
    UNCHANGED,
    UNREACHABLE,
    WOULD_CHANGE,
    LazyRedis,
    redis_status,
    text_of,
)
from echoes_ops.operations.flags.rowlock import lock_flag_row

_MIGRATE_HINT = "run: echoes-ops db migrate"
# the switch's own wait (ECHOES_OPS_FLAGS_TIMEOUT): it must answer during an incident
FLAG_TIMEOUTS = switch_timeouts()


# -- values --------------------------------------------------------------------------------


@dataclass
class FlagValue:
    """A flag as PostgreSQL holds it (or its default when never set)."""

    name: str
    value: str
    default: str | None
    is_default: bool  # no row in PostgreSQL: the default applies
    known: bool
    description: str = ""
    updated_at: float | None = None
    updated_by: str | None = None
    reason: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SELECT = (
    "SELECT name, value, extract(epoch FROM updated_at) AS at, updated_by, reason "
    "FROM echoes_ops.flags"
)


def _from_row(row: Any) -> FlagValue:
    known = contract.KNOWN_FLAGS.get(row["name"])
    return FlagValue(
        name=row["name"],
        value=row["value"],
        default=known.default if known else None,
        is_default=False,
        known=known is not None,
        description=known.description if known else "",
        updated_at=float(row["at"]),
        updated_by=row["updated_by"],
        reason=row["reason"],
        version=contract.version_from_epoch(row["at"]),
    )


def _default(spec: contract.FlagSpec) -> FlagValue:
    return FlagValue(
        name=spec.name,
        value=spec.default,
        default=spec.default,
        is_default=True,
        known=True,
        description=spec.description,
    )


async def _fetch(conn: Any, query: str, *args: Any) -> list[Any]:
    import asyncpg

    try:
        rows: list[Any] = await conn.fetch(query, *args)
    except asyncpg.UndefinedTableError:
        raise PostgresError("table echoes_ops.flags does not exist", hint=_MIGRATE_HINT) from None
    return rows


async def list_flags(dsn: str, *, timeouts: PgTimeouts = FLAG_TIMEOUTS) -> list[FlagValue]:
    """Every known flag (its default when never set), then any other row in the table."""
    async with open_postgres(dsn, timeouts=timeouts) as conn:
        rows = {row["name"]: _from_row(row) for row in await _fetch(conn, _SELECT)}
    out = [
        rows.pop(name) if name in rows else _default(spec)
        for name, spec in contract.KNOWN_FLAGS.items()
    ]
    return out + sorted(rows.values(), key=lambda f: f.name)


async def get_flag(dsn: str, name: str, *, timeouts: PgTimeouts = FLAG_TIMEOUTS) -> FlagValue:
    spec = contract.spec(name)
    async with open_postgres(dsn, timeouts=timeouts) as conn:
        rows = await _fetch(conn, _SELECT + " WHERE name = $1", spec.name)
    return _from_row(rows[0]) if rows else _default(spec)


# -- set -------------------------------------------------------------------------------------


@dataclass
class TargetOutcome:
    target: str  # "postgresql", "env_file", "redis"
    status: str  # ok, unchanged, would change, skipped, failed, unreachable
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SetResult:
    name: str
    value: str
    previous: str
    dry_run: bool
    reason: str
    operator: str
    version: str | None = None
    env_changes: list[EnvChange] = field(default_factory=list)
    targets: list[TargetOutcome] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.previous != self.value

    @property
    def failed(self) -> list[TargetOutcome]:
        return [t for t in self.targets if t.status == FAILED and t.target != "redis"]

    @property
    def warnings(self) -> list[TargetOutcome]:
        return [
            t for t in self.targets if t.status in (FAILED, UNREACHABLE) and t not in self.failed
        ]

    def outcome(self, target: str) -> TargetOutcome | None:
        return next((t for t in self.targets if t.target == target), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "previous": self.previous,
            "changed": self.changed,
            "dry_run": self.dry_run,
            "reason": self.reason,
            "operator": self.operator,
            "version": self.version,
            "env_changes": [asdict(c) for c in self.env_changes],
            "targets": {t.target: {"status": t.status, "detail": t.detail} for t in self.targets},
        }


_UPSERT = (
    "INSERT INTO echoes_ops.flags AS f (name, value, updated_at, updated_by, reason) "
    "VALUES ($1, $2, now(), $3, $4) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
    # versions only grow, even if the server clock steps back
    "updated_at = greatest(EXCLUDED.updated_at, f.updated_at + interval '1 microsecond'), "
    "updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason "
    "RETURNING extract(epoch FROM updated_at) AS at"
)


async def set_flag(
    dsn: str,
    name: str,
    value: str,
    *,
    reason: str,
    operator: str,
    env_file: str | None = None,
    redis: LazyRedis | None = None,
    dry_run: bool = False,
    timeouts: PgTimeouts = FLAG_TIMEOUTS,
) -> SetResult:
    """Set a flag in PostgreSQL, the env file and the Redis mirror (see the module doc).

    Raises (nothing written) when the flag or value is invalid, the reason is empty, the
    env file cannot be read or written, or PostgreSQL fails (another session holding the
    flag's row past ``timeouts.lock``: :class:`FlagLockedError`, naming it). Afterwards, an env file that
    could not be renamed into place is a failed target and Redis problems are warnings.
    """
    spec = contract.spec(name)
    canonical = spec.parse(value)
    reason = reason.strip()
    if not reason:
        raise ConfigError("a reason is required (--reason)")
    result = SetResult(spec.name, canonical, spec.default, dry_run, reason, operator)

    plan: EnvPlan | None = None
    real: Path | None = None
    tmp: Path | None = None
    if env_file:
        real, text = envfile.read_env_file(env_file)
        plan = plan_env_update(env_file, text, spec.name, canonical)
        result.env_changes = plan.changes
        if plan.changed and not dry_run:
            tmp = envfile.prepare_replacement(real, plan.new_text)
    try:
        await _write_postgres(dsn, result, dry_run=dry_run, timeouts=timeouts)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise

    result.targets.append(_write_env(env_file, plan, real, tmp, result, dry_run=dry_run))
    result.targets.append(await _write_redis(redis, result, dry_run=dry_run))
    return result


async def _write_postgres(
    dsn: str, result: SetResult, *, dry_run: bool, timeouts: PgTimeouts
) -> None:
    async with open_postgres(dsn, timeouts=timeouts) as conn:
        import asyncpg

        try:
            async with conn.transaction():
                # serialises two setters; a row held elsewhere fails within timeouts.lock
                row = await lock_flag_row(dsn, conn, result.name, timeouts)
                if row is not None:
                    result.previous = row["value"]
                if dry_run:
                    detail = f"would set {result.name}={result.value} (now {result.previous})"
                    result.targets.append(TargetOutcome("postgresql", WOULD_CHANGE, detail))
                    return
                at = await conn.fetchval(
                    _UPSERT, result.name, result.value, result.operator, result.reason
                )
        except asyncpg.UndefinedTableError:
            raise PostgresError(
                "table echoes_ops.flags does not exist", hint=_MIGRATE_HINT
            ) from None
    result.version = contract.version_from_epoch(at)
    detail = f"{result.name}: {result.previous} -> {result.value} (version {result.version})"
    result.targets.append(TargetOutcome("postgresql", OK, detail))


def _write_env(
    env_file: str | None,
    plan: EnvPlan | None,
    real: Path | None,
    tmp: Path | None,
    result: SetResult,
    *,
    dry_run: bool,
) -> TargetOutcome:
    if not env_file or plan is None or real is None:
        return TargetOutcome(
            "env_file", SKIPPED, "no env file configured (--env-file or ECHOES_OPS_ENV_FILE)"
        )
    if not plan.changed:
        return TargetOutcome(
            "env_file", UNCHANGED, f"{env_file} already has {result.name}={result.value}"
        )
    summary = ", ".join(
        f"line {c.line}: {c.before!r} -> {c.after!r}"
        if c.before is not None
        else f"append line {c.line}: {c.after!r}"
        for c in plan.changes
    )
    if dry_run or tmp is None:
        return TargetOutcome("env_file", WOULD_CHANGE, f"{env_file}: {summary}")
    try:
        # someone edited the file since it was read: start again from their version
        now = real.read_bytes().decode("utf-8", "surrogateescape")
        if now != plan.original:
            tmp.unlink(missing_ok=True)
            replan = plan_env_update(env_file, now, result.name, result.value)
            result.env_changes = replan.changes
            if not replan.changed:
                return TargetOutcome(
                    "env_file", UNCHANGED, f"{env_file} already has {result.name}={result.value}"
                )
            tmp = envfile.prepare_replacement(real, replan.new_text)
        envfile.commit_replacement(tmp, real)
    except (OSError, ConfigError) as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return TargetOutcome("env_file", FAILED, f"{env_file}: {exc}")
    return TargetOutcome("env_file", OK, f"{env_file}: {summary}")


async def _write_redis(
    redis: LazyRedis | None, result: SetResult, *, dry_run: bool
) -> TargetOutcome:
    if redis is None:
        return TargetOutcome("redis", SKIPPED, "Redis not used")
    r = await redis.get()
    if r is None:
        status = UNREACHABLE if redis.unreachable else FAILED
        return TargetOutcome(
            "redis",
            status,
            f"mirror not written: {redis.error} (workers still get the change from PostgreSQL)",
        )
    try:
        if dry_run:
            mirrored = text_of(await r.hget(keys.FLAGS_KEY, result.name))
            listeners = await r.pubsub_numsub(keys.WORKERS_CHANNEL)
            count = int(listeners[0][1]) if listeners else 0
            return TargetOutcome(
                "redis",
                WOULD_CHANGE,
                f"would set {keys.FLAGS_KEY} {result.name}={result.value} (now "
                f"{mirrored if mirrored is not None else 'unset'}) and tell {count} subscriber(s) "
                f"of {keys.WORKERS_CHANNEL}",
            )
        assert result.version is not None
        pipe = r.pipeline(transaction=True)
        pipe.hset(
            keys.FLAGS_KEY,
            mapping=contract.mirror_fields(  # type: ignore[arg-type]
                result.name, result.value, result.version, result.operator
            ),
        )
        await pipe.execute()
        message = envelopes.worker_event(
            "config_changed",
            None,
            flag=result.name,
            value=result.value,
            version=result.version,
            updated_by=result.operator,
        )
        receivers = int(await r.publish(message.channel, message.to_json()))
    except (RedisError, OSError, TimeoutError) as exc:
        return TargetOutcome(
            "redis",
            redis_status(exc),
            f"mirror not written: {exc} (workers still get the change from PostgreSQL)",
        )
    return TargetOutcome(
        "redis",
        OK,
        f"{keys.FLAGS_KEY} {result.name}={result.value}; config_changed sent to "
        f"{receivers} subscriber(s) of {keys.WORKERS_CHANNEL}",
    )
