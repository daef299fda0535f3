"""Pausing Python's cycle collector around work that builds many objects and no cycles.

Reading a world (gamedata) and reconcile's census build hundreds of thousands to millions of
objects that live on for the rest of the work (raw values and models; one record per
session) and hold no reference cycles. While they are built, every collection of the oldest
generation walks all of them: 16 % of the CPU of reading the 220,000-entry world, and about
0.5 s of a census of 200,000 sessions in a process holding a million keys' worth of objects
(four full collections). Whatever the work leaves behind is collected once the collector is
back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """The cycle collector off for the block (as it was before, after it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
