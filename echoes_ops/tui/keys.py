"""Keys in the order they were typed, each handled before the next is routed.

Textual routes a key to the widget focused *when the app reads it* and lets that widget
handle it later, in its own queue; a binding that moves focus (``/`` to the search box, a
tab switch, a modal) runs later still, when the key has bubbled back up to the app, and a
focus change is itself deferred. Keys typed faster than that round trip (a burst read from
the terminal at once) were routed to the old widget: ``/`` then ``Wren1`` switched tabs and
a following ``k`` kicked the row under the cursor.

:class:`KeyQueue` holds each key until the previous one has finished its journey: handled by
the focused widget, bubbled up through every parent to the app (where bindings run), and
the focus changes it asked for applied; a pushed screen must have its focus before a key
is routed to it. A watchdog releases the queue if a journey cannot be followed (a widget
removed meanwhile), so keys are never stuck.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from textual import events
from textual.app import App
from textual.dom import DOMNode
from textual.timer import Timer

WATCHDOG = 1.0  # seconds a key may take before the next is routed anyway
SCREEN_READY_WAIT = 1.0  # seconds to wait for a new screen to focus its first widget
RETRY = 0.01


class KeyQueue:
    """Owned by the app; ``route`` is the app's own routing of one fresh key."""

    def __init__(self, app: App[Any], route: Callable[[events.Key], Awaitable[None]]) -> None:
        self.app = app
        self.route = route
        self.pending: deque[events.Key] = deque()
        self.current: events.Key | None = None
        self._watchdog: Timer | None = None
        self._waiting_since: float | None = None

    def put(self, event: events.Key) -> None:
        self.pending.append(event)
        if self.current is None:
            self._next()

    @property
    def idle(self) -> bool:
        return self.current is None and not self.pending

    # -- one key's journey ------------------------------------------------------------------

    def _next(self) -> None:
        self._stop_watchdog()
        self.current = None
        if not self.pending:
            return
        if not self._screen_ready():
            self.app.set_timer(RETRY, self._next)
            return
        event = self.pending.popleft()
        self.current = event
        self._watchdog = self.app.set_timer(WATCHDOG, lambda: self._release(event))
        self.app.call_later(self._dispatch, event)

    async def _dispatch(self, event: events.Key) -> None:
        target: DOMNode = self.app.focused or self.app.screen
        await self.route(event)
        if event.is_forwarded:
            target.call_later(self._after, target, event)
        else:  # a priority binding handled it here
            self._settle(event)

    def _after(self, node: DOMNode, event: events.Key) -> None:
        """Runs in ``node``'s queue just after ``node`` handled ``event``."""
        parent = node._parent
        if event._stop_propagation or parent is None or node is self.app:
            self._settle(event)
        elif isinstance(parent, DOMNode):
            parent.call_later(self._after, parent, event)  # it bubbled there: follow it
        else:
            self._settle(event)

    def _settle(self, event: events.Key) -> None:
        """The key is handled; what it asked for (a deferred focus, ``call_later`` on the
        app) is queued on the app behind this hop: route the next key after it."""
        self.app.call_later(self.app.call_later, self._release, event)

    def _release(self, event: events.Key) -> None:
        if self.current is event:
            self._next()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def _screen_ready(self) -> bool:
        """A screen just pushed has not focused its first widget yet: keys typed meanwhile
        are meant for it. Wait for its focus (at most ``SCREEN_READY_WAIT``)."""
        screen = self.app.screen
        ready = (
            not screen.is_modal
            or screen.focused is not None
            or (screen.is_mounted and not any(w.focusable for w in screen.query("*")))
        )
        if ready:
            self._waiting_since = None
            return True
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since > SCREEN_READY_WAIT:
            self._waiting_since = None
            return True
        return False
