"""Running source calls in Textual workers: the worker awaits the call and posts a message
with the result (or the error) to the widget that asked; it never touches a widget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.widget import Widget

from echoes_ops.errors import OpsError
from echoes_ops.tui.messages import ActionDone, ActionFailed, Loaded, LoadFailed
from echoes_ops.tui.source import Source

T = TypeVar("T")


def load(widget: Widget, key: str, call: Callable[[], Awaitable[Any]]) -> None:
    """Fetch in a worker; ``widget`` gets :class:`Loaded` or :class:`LoadFailed`. A newer
    load with the same key cancels the older one."""

    async def job() -> None:
        try:
            value = await call()
        except OpsError as exc:
            widget.post_message(LoadFailed(key, exc))
            return
        widget.post_message(Loaded(key, value))

    widget.run_worker(job(), group=f"load:{key}", exclusive=True)


def act(
    widget: Widget,
    source: Source,
    action: str,
    call: Callable[[], Awaitable[T]],
    describe: Callable[[T], str],
) -> None:
    """Run a write in a worker; ``widget`` gets :class:`ActionDone` (with a one-line
    summary) or :class:`ActionFailed`, each with the audit warnings it caused."""

    async def job() -> None:
        try:
            result = await call()
        except OpsError as exc:
            widget.post_message(ActionFailed(action, exc, source.take_warnings()))
            return
        widget.post_message(ActionDone(action, describe(result), source.take_warnings()))

    widget.run_worker(job(), group=f"action:{action}")
