"""The screen process's garbage collector, tuned for a steady frame rate.

A full collection walks every tracked object, so in a screen holding Textual's widgets,
styles and rendered lines (about 160,000 objects at 160x48 with the live tail on) each one
paused it for 40-50 ms, several times in 10 s. So: at mount, :meth:`start` freezes what
Textual built (it lives as long as the app) out of collections and raises the young
generation's threshold, so the live tail's short-lived events die young instead of being
promoted; :meth:`settle` freezes again once the first data is shown. Measured with the
live tail at 1,000 msg/s: no full collection in 10 s (four of 40-50 ms before), the GC's
total pause ~90 ms per 10 s instead of ~220 ms (docs/benchmarks/dashboard.md). :meth:`restore`
undoes it all (the tests run many apps in one process).
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000  # allocations between young collections (Python's: 700)


class GcPolicy:
    def __init__(self) -> None:
        self.saved: tuple[int, int, int] | None = None
        self.settled = False

    def start(self) -> None:
        if self.saved is None:
            self.saved = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, *self.saved[1:])
        gc.freeze()

    def settle(self) -> None:
        if self.saved is not None and not self.settled:
            self.settled = True
            gc.freeze()

    def restore(self) -> None:
        if self.saved is None:
            return
        gc.set_threshold(*self.saved)
        gc.unfreeze()
        self.saved = None
