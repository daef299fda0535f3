"""The suite's one way to wait: poll a condition until it holds, or fail saying what was
awaited and what was last seen. Never a fixed sleep standing in for an event.

``wait_until`` (threads, subprocess tests) and ``eventually`` (async tests) share the
deadline and the failure message; ``retry_on`` names exceptions that mean "not yet" (a
server still starting) rather than a failure.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

SYNC_INTERVAL = 0.005
ASYNC_INTERVAL = 0.02


class _Deadline:
    """What one wait has seen so far, and its failure message."""

    def __init__(self, timeout: float, what: str, condition: object) -> None:
        self.timeout = timeout
        self.ends = time.monotonic() + timeout
        self.what = what or getattr(condition, "__qualname__", repr(condition))
        self.last: object = None
        self.error: BaseException | None = None

    def passed(self) -> bool:
        return time.monotonic() >= self.ends

    def failure(self) -> AssertionError:
        seen = f"last error {self.error!r}" if self.error else f"last seen {self.last!r}"
        return AssertionError(
            f"timed out after {self.timeout:g} s waiting for {self.what} ({seen})"
        )


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = SYNC_INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds with ``what`` and the last value (or error) seen."""
    deadline = _Deadline(timeout, what, condition)
    while True:
        try:
            value = condition()
        except retry_on as exc:
            deadline.error = exc
        else:
            if value:
                return value
            deadline.last, deadline.error = value, None
        if deadline.passed():
            raise deadline.failure()
        time.sleep(interval)


async def eventually(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    what: str = "",
    *,
    interval: float = ASYNC_INTERVAL,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """The same, awaiting: ``condition`` may be a plain function or return an awaitable."""
    deadline = _Deadline(timeout, what, condition)
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            deadline.error = exc
        else:
            if value:
                return value
            deadline.last, deadline.error = value, None
        if deadline.passed():
            raise deadline.failure()
        await asyncio.sleep(interval)
