"""How many players one warmup script call carries, from the server time the calls report.

Every command echoes-ops sends stays within the tier's budget: 1 ms p99 and 2 ms at most
of server time (docs/design.md). A warmup call's cost is about proportional to its players
and depends on what it finds (absent keys are written without a compare; present ones are
read and compared), on the rows (inventory sizes) and on the machine, so a fixed count
cannot hold the budget: calls report how long their body ran (the server's main-thread CPU
time from ``INFO cpu`` at their start and end, on one call in four), and the next calls are
sized from what the last ones cost per player. CPU time rather than wall time: on a busy
machine the OS stops redis-server in the middle of any command, whatever its size, and a
smaller step cannot help that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Server time one call aims at (its body; reading its arguments adds about a fifth), well
# inside the 1 ms p99 budget so a slower call (a compare instead of a first fill, a long
# inventory, the machine busy) still fits.
TARGET_US = 400.0
# When the median call of a batch ran this long, the next step is halved at once.
LONG_US = 1000.0
# The first calls of a run, before any measurement.
FIRST_STEP = 16


@dataclass
class StepSizer:
    """The next call's player count: the target over the median cost per player of the last
    batch's calls; grows at most 2x per batch of calls, shrinks at once."""

    maximum: int
    target_us: float = TARGET_US
    step: int = FIRST_STEP
    longest_us: int = 0  # the longest call body seen in the run
    history: list[int] = field(default_factory=list)  # the step of each batch of calls

    def __post_init__(self) -> None:
        self.step = max(1, min(self.step, self.maximum))

    def observe(self, sizes: Sequence[int], body_us: Sequence[int]) -> None:
        """Take in one batch of calls: players per call and each call's body time."""
        self.history.append(self.step)
        costs = sorted(us / n for n, us in zip(sizes, body_us, strict=True) if n > 0)
        if not costs:
            return
        self.longest_us = max(self.longest_us, max(body_us))
        # medians: calls the OS delayed (on a busy machine it stops redis-server in the
        # middle of any command, whatever its size) do not shrink the step
        per_player = max(costs[(len(costs) - 1) // 2], 1.0)
        typical = sorted(body_us)[(len(body_us) - 1) // 2]
        step = min(int(self.target_us / per_player), 2 * self.step)
        if typical > LONG_US:
            step = min(step, self.step // 2)
        self.step = max(1, min(step, self.maximum))
