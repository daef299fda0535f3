"""What a warmup did: the counts of its report, and the tally of the script replies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.errors import ConfigError

# Example ids kept per finding in the report.
EXAMPLES = 10

WHAT_CHOICES: tuple[str, ...] = ("sessions", "inventories", "static")


@dataclass
class SessionCounts:
    written: int = 0
    unchanged: int = 0
    skipped_fresher: int = 0
    skipped_unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "skipped_fresher": self.skipped_fresher,
            "skipped_unknown": self.skipped_unknown,
        }


@dataclass
class InventoryCounts:
    written: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped_fresher: int = 0
    skipped_unknown: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped_fresher": self.skipped_fresher,
            "skipped_unknown": self.skipped_unknown,
            "rows": self.rows,
        }


@dataclass
class WarmupReport:
    """What a warmup did (or, with ``dry_run``, would do)."""

    dry_run: bool
    what: list[str]
    active_within_minutes: int
    started_at: float
    max_seconds: float | None = None
    elapsed_s: float = 0.0
    partial: bool = False
    stopped_because: str | None = None  # "max_seconds" or "lock_lost" when partial
    characters: int = 0
    invalid: int = 0
    sessions: SessionCounts = field(default_factory=SessionCounts)
    inventories: InventoryCounts = field(default_factory=InventoryCounts)
    static: dict[str, Any] | None = None
    batches: int = 0
    script_calls: int = 0
    # server CPU time of the calls that measured it (INFO cpu inside the call): the longest
    # one, their sum and the players they held (the rest is estimated from them)
    longest_call_us: int = 0
    server_us: int = 0
    measured_players: int = 0
    # where the run's wall time went: waiting for PostgreSQL, encoding, waiting for Redis
    waited_postgres_s: float = 0.0
    encoding_s: float = 0.0
    waited_redis_s: float = 0.0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.characters / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def changed(self) -> int:
        """Keys written or removed (what a dry run would write)."""
        return self.sessions.written + self.inventories.written + self.inventories.removed

    @property
    def server_estimate_s(self) -> float:
        """Server CPU time of all calls, from the calls that measured theirs."""
        if not self.measured_players:
            return 0.0
        players = self.characters - self.invalid
        return self.server_us / 1e6 * players / self.measured_players

    def example(self, kind: str, item: dict[str, Any]) -> None:
        bucket = self.examples.setdefault(kind, [])
        if len(bucket) < EXAMPLES:
            bucket.append(item)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "what": self.what,
            "active_within_minutes": self.active_within_minutes,
            "started_at": round(self.started_at, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "max_seconds": self.max_seconds,
            "partial": self.partial,
            "stopped_because": self.stopped_because,
            "characters": self.characters,
            "rows_per_s": round(self.rows_per_s),
            "invalid": self.invalid,
            "sessions": self.sessions.as_dict() if "sessions" in self.what else None,
            "inventories": self.inventories.as_dict() if "inventories" in self.what else None,
            "static": self.static,
            "batches": self.batches,
            "script_calls": self.script_calls,
            "longest_call_ms": round(self.longest_call_us / 1000, 3),
            "time_split_s": {
                "postgres_wait": round(self.waited_postgres_s, 3),
                "encoding": round(self.encoding_s, 3),
                "redis_wait": round(self.waited_redis_s, 3),
                "redis_server": round(self.server_estimate_s, 3),
            },
            "examples": self.examples,
            "ignored_columns": self.ignored_columns,
        }


def parse_what(text: str | Sequence[str]) -> list[str]:
    """``"sessions,inventories"`` -> the parts, checked, in canonical order."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = {p.strip().lower() for p in parts if p.strip()}
    unknown = sorted(chosen - set(WHAT_CHOICES))
    if unknown or not chosen:
        raise ConfigError(
            f"--what must be a comma-separated list of {', '.join(WHAT_CHOICES)}; "
            f"got {','.join(parts) if parts else 'nothing'}"
        )
    return [w for w in WHAT_CHOICES if w in chosen]


def tally(report: WarmupReport, calls: list[list[int]], replies: list[Any]) -> None:
    s, inv = report.sessions, report.inventories
    for ids, reply in zip(calls, replies, strict=True):
        session_codes, inventory_codes, body_us = reply[0], reply[1], reply[2]
        if body_us >= 0:
            report.server_us += body_us
            report.measured_players += len(ids)
            report.longest_call_us = max(report.longest_call_us, body_us)
        s.written += session_codes.count("W")
        s.unchanged += session_codes.count("U")
        s.skipped_fresher += session_codes.count("F")
        inv.written += inventory_codes.count("W")
        inv.removed += inventory_codes.count("D")
        inv.unchanged += inventory_codes.count("U")
        inv.skipped_fresher += inventory_codes.count("F")
        unknown = session_codes.count("X")
        s.skipped_unknown += unknown
        inv_unknown = inventory_codes.count("X")
        inv.skipped_unknown += inv_unknown
        if unknown or inv_unknown:
            for i, cid in enumerate(ids):
                if session_codes[i] == "X" or inventory_codes[i] == "X":
                    report.example("skipped_unknown", {"id": cid})
