"""Where a flag stands: one reading of every source and every live worker, and what is
wrong with it. The one implementation behind ``flags status``, the dashboard's Flags tab
and header, ``status`` and ``doctor``'s REDIS_ENABLED check (a verdict over
:attr:`FlagStatus.severity`).

Sources: PostgreSQL (the source of truth), the deployment's env file (read by
:mod:`echoes_ops.operations.flags.envfile`) and the Redis mirror. Workers: what each live
worker reports in its meta hash (the value it applied, else what its mode implies).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Final

from redis.exceptions import RedisError

from echoes_ops import fmt
from echoes_ops.client.connect import AnyRedis
from echoes_ops.config import PgTimeouts
from echoes_ops.contract import codec, keys
from echoes_ops.contract import flags as contract
from echoes_ops.errors import ConfigError, OpsError, PostgresUnreachableError
from echoes_ops.operations.flags import envfile
from echoes_ops.operations.flags.link import LazyRedis, text_of
from echoes_ops.operations.flags.store import FLAG_TIMEOUTS, get_flag
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness

# severities, from best to worst (doctor maps them onto its verdicts)
OK: Final = "ok"
WARN: Final = "warn"  # something to look at: a restart would flip workers, a source unreadable
FAIL: Final = "fail"  # live workers run a value other than the truth, or differ among themselves


@dataclass
class SourceValue:
    source: str  # "postgresql", "env_file", "redis"
    state: str  # "set", "unset" (the default applies), "not configured", "unreachable", "error"
    value: str | None  # as stored; None when unset or unknown
    effective: str | None  # what it means: canonical true/false, the default when unset
    detail: str = ""
    version: str | None = None

    @property
    def valid(self) -> bool:
        """Not a value the flag cannot take (a boolean flag set to ``maybe``)."""
        return self.effective is None or contract.as_bool(self.effective) is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


@dataclass
class WorkerFlagView:
    worker_id: str
    mode: str | None
    redis_enabled: str | None  # reported, else what the mode implies; None: cannot tell
    flags_version: str | None
    flags_source: str | None
    applied: bool | None  # None: cannot tell (no truth to compare with)
    heartbeat_age: float | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.heartbeat_age is not None:
            out["heartbeat_age"] = round(self.heartbeat_age, 1)
        return out


LABELS: Final = {"postgresql": "PostgreSQL", "env_file": "env file", "redis": "Redis mirror"}


@dataclass(frozen=True)
class FlagHeadline:
    """The flag in one line, as ``status``, the dashboard's header and its Overview show it:
    the source of truth's value, where it came from, the live workers' modes, and loud
    alarms for whatever disagrees with it (``note``: quieter, PostgreSQL not configured)."""

    name: str
    value: str | None  # None: nothing could be read
    source: str  # where ``value`` came from, in words
    modes: str  # "3/3 workers fallback"
    alarms: tuple[str, ...] = ()
    note: str | None = None

    @property
    def text(self) -> str:
        return f"{self.name}={self.value or 'unknown'} ({self.source}); {self.modes}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alarms": list(self.alarms)}


@dataclass
class FlagStatus:
    name: str
    expected: str | None  # PostgreSQL's effective value (None when PostgreSQL is unknown)
    sources: list[SourceValue]
    workers: list[WorkerFlagView]
    redis_reachable: bool

    def source(self, name: str) -> SourceValue | None:
        return next((s for s in self.sources if s.source == name), None)

    @property
    def agree(self) -> bool:
        values = {s.effective for s in self.sources if s.effective is not None}
        return len(values) <= 1

    @property
    def invalid(self) -> list[str]:
        """Sources holding a value the flag cannot take, as ``source='value'``."""
        return [f"{s.source}={s.value!r}" for s in self.sources if not s.valid]

    @property
    def stale_workers(self) -> list[str]:
        """Live workers whose value is not PostgreSQL's (or who report none)."""
        return [w.worker_id for w in self.workers if w.applied is False]

    @property
    def worker_values(self) -> dict[str, int]:
        """How many live workers run each value (``"?"``: cannot tell)."""
        return dict(Counter(w.redis_enabled or "?" for w in self.workers))

    @property
    def workers_split(self) -> bool:
        """Live workers run different values: the game is split in two."""
        return len({w.redis_enabled for w in self.workers if w.redis_enabled}) > 1

    @property
    def modes_line(self) -> str:
        """The workers' modes in a few words: ``3/3 workers fallback``."""
        total = len(self.workers)
        if not total:
            return "no live workers" if self.redis_reachable else "workers unknown (Redis down)"
        (mode, n), *rest = Counter(w.mode or "?" for w in self.workers).most_common()
        return ", ".join([f"{n}/{total} workers {mode}", *(f"{k}/{total} {m}" for m, k in rest)])

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
        """What an operator must look at, worst first: workers split or behind the truth,
        sources disagreeing or holding a non-value, PostgreSQL or the env file unreadable."""
        out = []
        if self.workers_split:
            split = ", ".join(f"{w.worker_id}={w.redis_enabled}" for w in self.workers)
            out.append(f"live workers disagree: {split}")
        if self.stale_workers:
            out.append(
                f"{len(self.stale_workers)} worker(s) have not applied {self.name}="
                f"{self.expected}: {', '.join(self.stale_workers)}"
            )
        if self.invalid:
            out.append(f"not a boolean: {', '.join(self.invalid)}")
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
        return out

    @property
    def headline(self) -> FlagHeadline:
        pg = self.source("postgresql")
        state = pg.state if pg is not None else "not configured"
        alarms: list[str] = []
        note = None
        if pg is not None and pg.effective is not None:
            value: str | None = pg.effective
            source = "PostgreSQL" if pg.state == "set" else "PostgreSQL: never set, the default"
        else:
            # the truth cannot be read: what a starting worker would apply next (the mirror,
            # its default when unset), else what a restart would take (the env file)
            known = next(
                (
                    s
                    for name in ("redis", "env_file")
                    for s in self.sources
                    if s.source == name and s.effective is not None
                ),
                None,
            )
            value = known.effective if known is not None else None
            source = "no source"
            if known is not None:
                source = f"{LABELS[known.source]} only"
                if known.state == "unset":
                    source += " (unset: the default)"
            if state == "not configured":
                note = "PostgreSQL (the source of truth) is not configured: set DATABASE_URL"
                source += ", PostgreSQL not configured"
            elif state == "reading":
                note = "PostgreSQL (the source of truth) has not answered yet"
                source += ", PostgreSQL not read yet"
            else:
                alarms.append(f"source of truth unreadable: PostgreSQL {state}")
        for s in self.sources:
            if s.source == "postgresql" or s.effective is None or s.effective == value:
                continue
            said = f"{s.effective} (unset: the default)" if s.state == "unset" else s.effective
            alarms.append(f"{LABELS.get(s.source, s.source)} says {said}")
        if self.workers_split:
            counts = ", ".join(f"{n} {v}" for v, n in sorted(self.worker_values.items()))
            alarms.append(f"workers disagree ({counts})")
        elif self.stale_workers:
            alarms.append(
                f"{len(self.stale_workers)}/{len(self.workers)} workers not on {self.expected}"
            )
        elif value is not None and any(w.redis_enabled not in (None, value) for w in self.workers):
            alarms.append(f"workers run {self.worker_values}, not {value}")
        return FlagHeadline(self.name, value, source, self.modes_line, tuple(alarms), note)

    @property
    def severity(self) -> str:
        if self.workers_split or self.stale_workers:
            return FAIL
        return WARN if self.problems else OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "agree": self.agree,
            "severity": self.severity,
            "redis_reachable": self.redis_reachable,
            "modes": self.modes_line,
            "headline": self.headline.as_dict(),
            "worker_values": self.worker_values,
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
    liveness: dict[str, WorkerLiveness] | None = None,
    timeouts: PgTimeouts = FLAG_TIMEOUTS,
    truth: SourceValue | None = None,
) -> FlagStatus:
    """The flag in PostgreSQL, the env file and the Redis mirror, and what each live worker
    reports having applied (``liveness``: already read, else read here; ``truth``:
    PostgreSQL's reading when the caller has a recent one, see :func:`truth_source`).
    Sources that cannot be read are reported, not raised."""
    spec = contract.spec(name)
    pg = truth if truth is not None else await truth_source(dsn, spec.name, timeouts)
    sources = [pg, env_source(env_file, spec)]
    r = await redis.get() if redis is not None else None
    workers: list[WorkerFlagView] = []
    if r is None:
        detail = redis.error if redis is not None and redis.error else "Redis not used"
        sources.append(SourceValue("redis", "unreachable", None, None, detail))
    else:
        try:
            sources.append(await _redis_source(r, spec))
            if liveness is None:
                liveness = await worker_liveness(r)
            workers = _workers(liveness, spec, pg.effective)
        except (RedisError, OSError, TimeoutError) as exc:
            sources.append(SourceValue("redis", "unreachable", None, None, str(exc)))
            r = None
    return FlagStatus(spec.name, pg.effective, sources, workers, redis_reachable=r is not None)


def _canonical(value: str) -> str:
    parsed = contract.as_bool(value)
    return value if parsed is None else ("true" if parsed else "false")


async def truth_source(
    dsn: str | None, name: str = contract.REDIS_ENABLED, timeouts: PgTimeouts = FLAG_TIMEOUTS
) -> SourceValue:
    """The flag as PostgreSQL, the source of truth, holds it (never raises)."""
    spec = contract.spec(name)
    if not dsn:
        return SourceValue("postgresql", "not configured", None, None, "DATABASE_URL is not set")
    try:
        flag = await get_flag(dsn, spec.name, timeouts=timeouts)
    except PostgresUnreachableError as exc:
        return SourceValue("postgresql", "unreachable", None, None, str(exc))
    except OpsError as exc:
        return SourceValue("postgresql", "error", None, None, str(exc))
    if flag.is_default:
        return SourceValue(
            "postgresql", "unset", None, spec.default, "never set: the default applies"
        )
    when = fmt.timestamp(flag.updated_at)
    return SourceValue(
        "postgresql",
        "set",
        flag.value,
        _canonical(flag.value),
        f"set by {flag.updated_by} at {when}: {flag.reason}",
        flag.version,
    )


def env_source(env_file: str | None, spec: contract.FlagSpec) -> SourceValue:
    """The flag as the env file holds it (the file read now)."""
    if not env_file:
        return SourceValue(
            "env_file",
            "not configured",
            None,
            None,
            "no env file (--env-file or ECHOES_OPS_ENV_FILE)",
        )
    try:
        _real, text = envfile.read_env_file(env_file)
    except ConfigError as exc:
        return SourceValue("env_file", "error", None, None, str(exc))
    value = envfile.env_value(text, spec.name)
    if value is None:
        return SourceValue(
            "env_file", "unset", None, spec.default, f"{env_file}: no {spec.name}= line"
        )
    return SourceValue("env_file", "set", value, _canonical(value), env_file)


async def _redis_source(r: AnyRedis, spec: contract.FlagSpec) -> SourceValue:
    value, version, updated_by = map(
        text_of,
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
        "redis",
        "set",
        value,
        _canonical(value),
        f"{keys.FLAGS_KEY} (set by {updated_by or '?'})",
        version,
    )


def _workers(
    liveness: dict[str, WorkerLiveness], spec: contract.FlagSpec, expected: str | None
) -> list[WorkerFlagView]:
    now = time.time()
    out = []
    for wid, live in sorted(liveness.items()):
        if not live.alive:
            continue
        meta = live.meta
        mode = meta.get(contract.META_MODE)
        reported = meta.get(contract.META_REDIS_ENABLED)
        if reported is not None:
            reported = _canonical(reported)
        elif spec.name == contract.REDIS_ENABLED:
            implied = contract.mode_means_enabled(mode)
            reported = None if implied is None else ("true" if implied else "false")
        applied = None
        if spec.name == contract.REDIS_ENABLED and expected is not None:
            applied = reported == expected if reported is not None else False
        heartbeat = codec.decode_epoch(meta.get("heartbeat"), now=now)
        out.append(
            WorkerFlagView(
                worker_id=wid,
                mode=mode,
                redis_enabled=reported,
                flags_version=meta.get(contract.META_FLAGS_VERSION),
                flags_source=meta.get(contract.META_FLAGS_SOURCE),
                applied=applied,
                heartbeat_age=None if heartbeat is None else max(0.0, now - heartbeat),
            )
        )
    return out
