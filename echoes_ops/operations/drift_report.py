"""What ``reconcile`` reports: the kinds of drift, per-kind counts, examples, pending
players, and what the audit record keeps (see :mod:`echoes_ops.operations.reconcile`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from echoes_ops.errors import ExitCode, OpsError

KINDS: tuple[str, ...] = (
    "orphan_member",
    "location_mismatch",
    "multi_location",
    "missing_member",
    "dead_worker",
    "stale_connection",
    "no_ttl_session",
    "no_ttl_inventory",
    "no_ttl_lock",
    "unknown_location",
)
DEFAULT_GRACE = 60.0
LOCK_REPAIR_TTL = 300
EXAMPLES = 10
AUDIT_IDS = 100  # ids of repaired entries named in the audit record, per kind
SESSION_FIELDS = ("location_id", "worker_id", "last_heartbeat")
RECHECK_BATCH = 100  # the most suspects per PRESENCE_RECHECK call (sized by the budget)
RECHECK_FIRST = 16  # suspects in the first call, before one has reported its cost
REPAIR_ORDER: tuple[str, ...] = (
    "dead_worker",
    "stale_connection",
    "orphan_member",
    "location_mismatch",
    "missing_member",
    "no_ttl_session",
    "no_ttl_inventory",
    "no_ttl_lock",
)


class ReconcileArgumentError(OpsError):
    exit_code = ExitCode.USAGE


REPAIRED_AS = {"multi_location": "location_mismatch"}  # a kind repaired through another


@dataclass
class KindReport:
    found: int = 0
    fixed: int = 0
    not_repairable: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0  # inside the grace period: repairable later
    pending_ready_in: float | None = None  # seconds until every pending one is repairable
    repaired: list[str] = field(default_factory=list)  # the first AUDIT_IDS repaired

    def add(self, example: dict[str, Any]) -> None:
        self.found += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)

    def add_pending(self, ready_in: float) -> None:
        self.pending += 1
        self.pending_ready_in = max(self.pending_ready_in or 0.0, ready_in)

    def as_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "fixed": self.fixed,
            "not_repairable": self.not_repairable,
            "pending": self.pending,
            "pending_ready_in_s": (
                None if self.pending_ready_in is None else round(self.pending_ready_in, 1)
            ),
            "examples": self.examples,
        }


@dataclass
class ReconcileReport:
    dry_run: bool
    grace_seconds: float
    scanned: dict[str, int]
    kinds: dict[str, KindReport]
    elapsed_s: float = 0.0
    selected: list[str] | None = None  # --kind: only these are counted and repaired
    note: str | None = None  # how the repairs are guarded on this topology (Redis Cluster)
    unconfirmed: int = 0  # cross-slot findings a second pass did not see again: left alone

    def chosen(self) -> list[str]:
        return [k for k in KINDS if self.selected is None or k in self.selected]

    @property
    def drift(self) -> int:
        return sum(self.kinds[k].found for k in self.chosen())

    @property
    def pending(self) -> int:
        return sum(self.kinds[k].pending for k in self.chosen())

    @property
    def clean(self) -> bool:
        return self.drift == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "clean": self.clean,
            "drift": self.drift,
            "pending": self.pending,
            "fixed": sum(self.kinds[k].fixed for k in self.chosen()),
            "selected": self.selected,
            "grace_seconds": self.grace_seconds,
            "scanned": self.scanned,
            "kinds": {name: self.kinds[name].as_dict() for name in KINDS},
            "elapsed_s": round(self.elapsed_s, 3),
            "note": self.note,
            "unconfirmed": self.unconfirmed,
        }

    def audit_detail(self) -> dict[str, Any]:
        """What the audit record keeps: per kind found, fixed, pending and the repaired ids
        (the first ``AUDIT_IDS``; ``ids_total`` says how many there were)."""
        out: dict[str, Any] = {}
        for name in self.chosen():
            k = self.kinds[name]
            if not (k.found or k.pending):
                continue
            out[name] = {"found": k.found, "fixed": k.fixed}
            if k.pending:
                out[name]["pending"] = k.pending
            if k.repaired:
                out[name]["ids"] = k.repaired
                out[name]["ids_total"] = k.fixed
        return out


def check_kinds(kinds: list[str] | None) -> list[str] | None:
    """``--kind`` values checked against :data:`KINDS` (None or empty: every kind)."""
    if not kinds:
        return None
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ReconcileArgumentError(f"unknown kind {unknown[0]!r}: one of {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def repair_kinds(kinds: list[str] | None) -> set[str]:
    if kinds is None:
        return set(REPAIR_ORDER)
    return {REPAIRED_AS.get(k, k) for k in kinds}
