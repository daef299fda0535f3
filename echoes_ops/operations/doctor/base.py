"""What every doctor check shares: the verdicts, a check's result, the report, and the
context the checks read (one INFO, one TIME, one keyspace walk, the workers' liveness)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract.pubsub import PubSubMode
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.keyspace import KeyspaceWalk
from echoes_ops.operations.tiermap import WorkerLiveness

VERDICTS: Final = ("ok", "unknown", "warn", "fail")
RANK: Final = {name: index for index, name in enumerate(VERDICTS)}


@dataclass
class Finding:
    """What one check found; the runner adds the check's id and title."""

    verdict: str
    summary: str  # what was found
    why: str  # why it matters
    fix: str = ""  # what to do ("" when nothing)
    details: dict[str, Any] = field(default_factory=dict)


def found(verdict: str, summary: str, why: str, fix: str = "", /, **details: Any) -> Finding:
    return Finding(verdict, summary, why, fix, dict(details))


@dataclass
class Check:
    id: str
    title: str
    verdict: str
    summary: str  # what was found
    why: str  # why it matters
    fix: str  # what to do ("" when nothing)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "verdict": self.verdict,
            "summary": self.summary,
            "why": self.why,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass
class DoctorReport:
    checks: list[Check]
    server_time: float
    elapsed_s: float

    @property
    def worst(self) -> str:
        return max((c.verdict for c in self.checks), key=RANK.__getitem__, default="ok")

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for c in self.checks if c.verdict == v) for v in VERDICTS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "worst": self.worst,
            "counts": self.counts(),
            "checks": [c.as_dict() for c in self.checks],
            "server_time": round(self.server_time, 3),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def refused(exc: ResponseError) -> str:
    """Why a command was refused, in one line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, NoPermissionError) or "NOPERM" in text:
        return f"denied by ACL for this user ({text})"
    if "unknown command" in text.lower():
        return f"disabled or renamed on this server ({text})"
    return text


class ConfigReader:
    """CONFIG GET of single parameters, remembering why it failed (never raising)."""

    def __init__(self, r: AnyRedis) -> None:
        self.r = r
        self.values: dict[str, str | None] = {}
        self.error: str | None = None

    async def get(self, name: str) -> str | None:
        if name in self.values:
            return self.values[name]
        value: str | None = None
        if self.error is None:
            try:
                reply = await self.r.config_get(name)
            except ResponseError as exc:
                self.error = f"CONFIG GET {refused(exc)}"
            else:
                raw = reply.get(name)
                value = None if raw is None else str(raw)
        self.values[name] = value
        return value

    def unknown(self, what: str) -> str:
        return f"cannot read {what}: {self.error or 'the server does not report it'}"


@dataclass
class Context:
    """What the checks read, gathered once per run."""

    r: AnyRedis
    info: dict[str, Any] | None
    info_error: str | None
    config: ConfigReader
    server_time: float
    walk: KeyspaceWalk
    liveness: dict[str, WorkerLiveness]
    gamedata: GameData | None = None
    gamedata_problem: str | None = None  # why gamedata is None
    database_url: str | None = None
    env_file: str | None = None
    pubsub_mode: PubSubMode = "classic"  # the configured REDIS_PUBSUB_MODE
