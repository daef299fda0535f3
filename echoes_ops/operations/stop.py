"""Stopping a long command at a step boundary, and saying what it really did.

A :class:`StopToken` is requested from outside (the CLI wires SIGINT and SIGTERM to it) and
checked by the operation between steps it can stop after without leaving half-written
data: between repair batches, before the chunk of a transaction that carries EXEC, after a
warmup batch. The operation then raises :class:`~echoes_ops.errors.Interrupted` whose
message is the true outcome (``nothing written``, ``committed version X``, ``repaired 400
of 1,000``), so the operator and the audit record are told what happened, not merely that
a signal arrived. Nothing here cancels a task: a command that never checks the token runs
to its end.
"""

from __future__ import annotations

from typing import Any

from echoes_ops.errors import Interrupted


class StopToken:
    """A request to stop at the next step boundary. Call it (``token()``) to ask whether a
    stop was requested, so it can be passed where a plain ``Callable[[], bool]`` fits."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def __call__(self) -> bool:
        return self.reason is not None

    def check(self, outcome: str, detail: dict[str, Any] | None = None) -> None:
        """Raise :class:`Interrupted` with ``outcome`` if a stop was requested."""
        if self.reason is not None:
            raise self.stopped(outcome, detail)

    def stopped(self, outcome: str, detail: dict[str, Any] | None = None) -> Interrupted:
        return Interrupted(
            f"stopped on {self.reason}: {outcome}",
            detail={"stopped_on": self.reason, "outcome": outcome, **(detail or {})},
        )


def never() -> bool:
    """A stop check that never fires (the default for callers without a token)."""
    return False
