"""Operational flags (``REDIS_ENABLED`` first): read, set, and check where they stand.

Setting a flag must work while Redis is down, since that is when ``REDIS_ENABLED=false``
is needed (DESIGN.md, decision 8). :func:`set_flag` therefore writes, in this order:

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

import contextlib
import os
import re
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.postgres import open_postgres
from echoes_ops.config import RedisTarget
from echoes_ops.contract import envelopes, keys
from echoes_ops.contract import flags as contract
from echoes_ops.errors import ConfigError, OpsError, PostgresError, UnreachableError
from echoes_ops.operations.audit import AuditLog, AuditRecord

# -- target outcomes ---------------------------------------------------------------------
OK = "ok"
UNCHANGED = "unchanged"  # already held the value: nothing written
WOULD_CHANGE = "would change"  # dry run
SKIPPED = "skipped"  # not configured
FAILED = "failed"
UNREACHABLE = "unreachable"

_MIGRATE_HINT = "run: echoes-ops db migrate"


# -- Redis, opened only when needed -------------------------------------------------------


class LazyRedis:
    """A Redis connection opened on first use; ``get()`` returns None (and keeps the error)
    instead of raising when Redis cannot be reached, so flag commands go on without it."""

    def __init__(self, target: RedisTarget | None) -> None:
        self.target = target
        self.error: str | None = None
        self.unreachable = False
        self._client: Redis | None = None
        self._tried = False
        self._stack = contextlib.AsyncExitStack()

    async def get(self) -> Redis | None:
        if self._tried:
            return self._client
        self._tried = True
        if self.target is None:
            self.error = self.error or "Redis not configured"
            return None
        from echoes_ops.client.connect import open_redis

        try:
            self._client = await self._stack.enter_async_context(open_redis(self.target))
        except OpsError as exc:
            self.error = str(exc)
            self.unreachable = isinstance(exc, UnreachableError)
        return self._client

    async def __aenter__(self) -> LazyRedis:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)


@dataclass
class FlagsAuditLog(AuditLog):
    """The audit trail for flag commands: PostgreSQL, plus the Redis stream only if Redis
    answers, asked when the record is written (after the change, so a dead Redis never
    delays the switch)."""

    lazy: LazyRedis | None = None

    async def write(self, record: AuditRecord) -> None:
        if self.redis is None and self.lazy is not None:
            self.redis = await self.lazy.get()
        await super().write(record)


def _text(value: object) -> str | None:
    """A reply of a decode_responses client (str) or None, typed as such."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _redis_status(exc: BaseException) -> str:
    return (
        UNREACHABLE
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)
        else FAILED
    )


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


async def list_flags(dsn: str) -> list[FlagValue]:
    """Every known flag (its default when never set), then any other row in the table."""
    async with open_postgres(dsn) as conn:
        rows = {row["name"]: _from_row(row) for row in await _fetch(conn, _SELECT)}
    out = [
        rows.pop(name) if name in rows else _default(spec)
        for name, spec in contract.KNOWN_FLAGS.items()
    ]
    return out + sorted(rows.values(), key=lambda f: f.name)


async def get_flag(dsn: str, name: str) -> FlagValue:
    spec = contract.spec(name)
    async with open_postgres(dsn) as conn:
        rows = await _fetch(conn, _SELECT + " WHERE name = $1", spec.name)
    return _from_row(rows[0]) if rows else _default(spec)


# -- the env file --------------------------------------------------------------------------

_ASSIGNMENT = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)(?P<rest>.*)$"
)
_INLINE_COMMENT = re.compile(r"[ \t]+#")


def _split_value(rest: str) -> tuple[str, str, str]:
    """(quote, value, tail) of what follows ``NAME=``; the tail keeps a trailing comment."""
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = 1
        while end < len(rest):
            if rest[end] == "\\" and quote == '"':
                end += 2
                continue
            if rest[end] == quote:
                return quote, rest[1:end], rest[end + 1 :]
            end += 1
        return "", rest, ""  # unbalanced quote: take it whole
    comment = _INLINE_COMMENT.search(rest)
    if comment is not None:
        return "", rest[: comment.start()], rest[comment.start() :]
    value = rest.rstrip(" \t")
    return "", value, rest[len(value) :]


def env_value(text: str, name: str) -> str | None:
    """The value ``name`` gets from an env file's text (the last assignment wins)."""
    found = None
    for raw in text.split("\n"):
        match = _ASSIGNMENT.match(raw.rstrip("\r"))
        if match is not None and match["name"] == name:
            found = _split_value(match["rest"])[1]
    return found


@dataclass
class EnvChange:
    line: int  # 1-based; for an append, the new line's number
    before: str | None  # None: appended
    after: str


@dataclass
class EnvPlan:
    path: str
    original: str
    new_text: str
    current: str | None
    changes: list[EnvChange]

    @property
    def changed(self) -> bool:
        return self.new_text != self.original


def plan_env_update(path: str, text: str, name: str, value: str) -> EnvPlan:
    """The env file's text with every ``name=`` line set to ``value`` (or one appended);
    every other byte kept."""
    parts = text.split("\n")
    changes: list[EnvChange] = []
    for index, raw in enumerate(parts):
        cr = "\r" if raw.endswith("\r") else ""
        body = raw[: len(raw) - len(cr)]
        match = _ASSIGNMENT.match(body)
        if match is None or match["name"] != name:
            continue
        quote, old, tail = _split_value(match["rest"])
        if old == value:
            continue
        new_body = f"{match['lead']}{name}{match['eq']}{quote}{value}{quote}{tail}"
        parts[index] = new_body + cr
        changes.append(EnvChange(index + 1, body, new_body))
    new_text = "\n".join(parts)
    current = env_value(text, name)
    if current is None:
        newline = "\r\n" if "\r\n" in text else "\n"
        line = f"{name}={value}"
        if new_text and not new_text.endswith("\n"):
            new_text += newline
        new_text += line + newline
        changes.append(EnvChange(new_text.count("\n"), None, line))
    return EnvPlan(path, text, new_text, current, changes)


def _read_env_file(path: str) -> tuple[Path, str]:
    """The real path (symlinks followed, so the link is kept) and the text."""
    real = Path(os.path.realpath(path))
    try:
        if not real.is_file():
            raise ConfigError(
                f"env file {path} does not exist or is not a regular file",
                hint="check --env-file / ECHOES_OPS_ENV_FILE",
            )
        raw = real.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror or exc}") from None
    return real, raw.decode("utf-8", "surrogateescape")


def _prepare(real: Path, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``real``, with its mode (and owner, when
    allowed), flushed to disk. The caller renames it into place or removes it."""
    try:
        st = real.stat()
        fd, name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write next to env file {real}: {exc.strerror or exc}",
            hint="the directory must be writable to replace the file atomically",
        ) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # not root: keep our own owner
                    os.fchown(handle.fileno(), st.st_uid, st.st_gid)
            handle.write(text.encode("utf-8", "surrogateescape"))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write env file {real}: {exc.strerror or exc}") from None
    return tmp


def _commit(tmp: Path, real: Path) -> None:
    os.replace(tmp, real)
    directory = os.open(real.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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


_LOCK_ROW = (
    "SELECT value FROM echoes_ops.flags WHERE name = $1 FOR UPDATE"  # serialises two setters
)
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
) -> SetResult:
    """Set a flag in PostgreSQL, the env file and the Redis mirror (see the module doc).

    Raises (nothing written) when the flag or value is invalid, the reason is empty, the
    env file cannot be read or written, or PostgreSQL fails. Afterwards, an env file that
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
        real, text = _read_env_file(env_file)
        plan = plan_env_update(env_file, text, spec.name, canonical)
        result.env_changes = plan.changes
        if plan.changed and not dry_run:
            tmp = _prepare(real, plan.new_text)
    try:
        await _write_postgres(dsn, result, dry_run=dry_run)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise

    result.targets.append(_write_env(env_file, plan, real, tmp, result, dry_run=dry_run))
    result.targets.append(await _write_redis(redis, result, dry_run=dry_run))
    return result


async def _write_postgres(dsn: str, result: SetResult, *, dry_run: bool) -> None:
    async with open_postgres(dsn) as conn:
        import asyncpg

        try:
            async with conn.transaction():
                row = await conn.fetchrow(_LOCK_ROW, result.name)
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
            tmp = _prepare(real, replan.new_text)
        _commit(tmp, real)
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
            mirrored = _text(await r.hget(keys.FLAGS_KEY, result.name))
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
            _redis_status(exc),
            f"mirror not written: {exc} (workers still get the change from PostgreSQL)",
        )
    return TargetOutcome(
        "redis",
        OK,
        f"{keys.FLAGS_KEY} {result.name}={result.value}; config_changed sent to "
        f"{receivers} subscriber(s) of {keys.WORKERS_CHANNEL}",
    )


# -- status ------------------------------------------------------------------------------


@dataclass
class SourceValue:
    source: str  # "postgresql", "env_file", "redis"
    state: str  # "set", "unset" (the default applies), "not configured", "unreachable", "error"
    value: str | None  # as stored; None when unset or unknown
    effective: str | None  # what it means: the value, or the default when unset
    detail: str = ""
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkerFlagView:
    worker_id: str
    mode: str | None
    redis_enabled: str | None
    flags_version: str | None
    flags_source: str | None
    applied: bool | None  # None: cannot tell (the worker does not report it, or no truth)
    heartbeat_age: float | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.heartbeat_age is not None:
            out["heartbeat_age"] = round(self.heartbeat_age, 1)
        return out


@dataclass
class FlagStatus:
    name: str
    expected: str | None  # PostgreSQL's effective value (None when PostgreSQL is unknown)
    sources: list[SourceValue]
    workers: list[WorkerFlagView]
    redis_reachable: bool

    @property
    def agree(self) -> bool:
        values = {s.effective for s in self.sources if s.effective is not None}
        return len(values) <= 1

    @property
    def stale_workers(self) -> list[str]:
        """Live workers whose reported value is not PostgreSQL's (or who report none)."""
        return [w.worker_id for w in self.workers if w.applied is False]

    @property
    def notes(self) -> list[str]:
        """Sources that could not be read but need not be (Redis down during a rollback)."""
        return [
            f"{s.source} {s.state}: {s.detail}"
            for s in self.sources
            if s.state == "unreachable" and s.source == "redis"
        ]

    @property
    def problems(self) -> list[str]:
        """What an operator must look at: sources disagreeing, PostgreSQL or the env file
        unreadable, workers that have not applied the value."""
        out = []
        if not self.agree:
            shown = ", ".join(f"{s.source}={s.effective}" for s in self.sources if s.effective)
            hint = ""
            if self.expected is not None:
                hint = (
                    f" (PostgreSQL is the truth: `echoes-ops flags set {self.name} "
                    f"{self.expected} --reason ...` rewrites the env file and the Redis mirror)"
                )
            out.append(f"sources disagree: {shown}{hint}")
        for s in self.sources:
            if s.state in ("unreachable", "error") and s.source != "redis":
                out.append(f"{s.source} {s.state}: {s.detail}")
        if self.stale_workers:
            out.append(
                f"{len(self.stale_workers)} worker(s) have not applied {self.name}="
                f"{self.expected}: {', '.join(self.stale_workers)}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "agree": self.agree,
            "redis_reachable": self.redis_reachable,
            "sources": [s.as_dict() for s in self.sources],
            "workers": [w.as_dict() for w in self.workers],
            "stale_workers": self.stale_workers,
            "problems": self.problems,
            "notes": self.notes,
        }


async def flag_status(
    dsn: str | None,
    name: str = contract.REDIS_ENABLED,
    *,
    env_file: str | None = None,
    redis: LazyRedis | None = None,
) -> FlagStatus:
    """The flag in PostgreSQL, the env file and the Redis mirror, and what each live worker
    reports having applied. Sources that cannot be read are reported, not raised."""
    spec = contract.spec(name)
    sources = [
        await _pg_source(dsn, spec),
        _env_source(env_file, spec),
    ]
    r = await redis.get() if redis is not None else None
    workers: list[WorkerFlagView] = []
    pg = sources[0]
    expected = pg.effective
    if r is None:
        detail = redis.error if redis is not None and redis.error else "Redis not used"
        sources.append(SourceValue("redis", "unreachable", None, None, detail))
    else:
        try:
            sources.append(await _redis_source(r, spec))
            workers = await _workers(r, spec, expected)
        except (RedisError, OSError, TimeoutError) as exc:
            sources.append(SourceValue("redis", "unreachable", None, None, str(exc)))
            r = None
    return FlagStatus(spec.name, expected, sources, workers, redis_reachable=r is not None)


async def _pg_source(dsn: str | None, spec: contract.FlagSpec) -> SourceValue:
    if not dsn:
        return SourceValue("postgresql", "not configured", None, None, "DATABASE_URL is not set")
    try:
        flag = await get_flag(dsn, spec.name)
    except OpsError as exc:
        return SourceValue("postgresql", "unreachable", None, None, str(exc))
    if flag.is_default:
        return SourceValue(
            "postgresql", "unset", None, spec.default, "never set: the default applies"
        )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(flag.updated_at or 0))
    return SourceValue(
        "postgresql",
        "set",
        flag.value,
        flag.value,
        f"set by {flag.updated_by} at {when}: {flag.reason}",
        flag.version,
    )


def _env_source(env_file: str | None, spec: contract.FlagSpec) -> SourceValue:
    if not env_file:
        return SourceValue(
            "env_file",
            "not configured",
            None,
            None,
            "no env file (--env-file or ECHOES_OPS_ENV_FILE)",
        )
    try:
        _real, text = _read_env_file(env_file)
    except ConfigError as exc:
        return SourceValue("env_file", "error", None, None, str(exc))
    value = env_value(text, spec.name)
    if value is None:
        return SourceValue(
            "env_file", "unset", None, spec.default, f"{env_file}: no {spec.name}= line"
        )
    effective = contract.as_bool(value)
    return SourceValue(
        "env_file",
        "set",
        value,
        ("true" if effective else "false") if effective is not None else value,
        env_file,
    )


async def _redis_source(r: Redis, spec: contract.FlagSpec) -> SourceValue:
    value, version, updated_by = map(
        _text,
        await r.hmget(
            keys.FLAGS_KEY,
            [
                spec.name,
                contract.mirror_version_field(spec.name),
                contract.mirror_updated_by_field(spec.name),
            ],
        ),
    )
    if value is None:
        return SourceValue(
            "redis", "unset", None, spec.default, f"{keys.FLAGS_KEY} has no {spec.name}"
        )
    return SourceValue(
        "redis", "set", value, value, f"{keys.FLAGS_KEY} (set by {updated_by or '?'})", version
    )


async def _workers(r: Redis, spec: contract.FlagSpec, expected: str | None) -> list[WorkerFlagView]:
    from echoes_ops.contract import codec
    from echoes_ops.operations.tiermap import worker_liveness

    now = time.time()
    out = []
    for wid, live in sorted((await worker_liveness(r)).items()):
        if not live.alive:
            continue
        meta = live.meta
        reported = meta.get(contract.META_REDIS_ENABLED)
        applied = None
        if spec.name == contract.REDIS_ENABLED and expected is not None:
            applied = reported == expected if reported is not None else False
        heartbeat = codec.decode_epoch(meta.get("heartbeat"), now=now)
        out.append(
            WorkerFlagView(
                worker_id=wid,
                mode=meta.get(contract.META_MODE),
                redis_enabled=reported,
                flags_version=meta.get(contract.META_FLAGS_VERSION),
                flags_source=meta.get(contract.META_FLAGS_SOURCE),
                applied=applied,
                heartbeat_age=None if heartbeat is None else max(0.0, now - heartbeat),
            )
        )
    return out
