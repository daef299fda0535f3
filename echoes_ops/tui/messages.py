"""Messages workers post: results of a poll, a request or an action, and failures.

Workers never touch widgets: they post one of these and a handler updates the state.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from echoes_ops.errors import OpsError
from echoes_ops.operations.overview import WriteAccess
from echoes_ops.operations.tail import TailEvent
from echoes_ops.tui.model import DriftView, Snapshot, TierView


class Opened(Message):
    """The source connected and checked its write access."""

    def __init__(self, access: WriteAccess) -> None:
        super().__init__()
        self.access = access


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class TierReady(Message):
    def __init__(self, tier: TierView) -> None:
        super().__init__()
        self.tier = tier


class DriftReady(Message):
    def __init__(self, drift: DriftView) -> None:
        super().__init__()
        self.drift = drift


class SourceFailed(Message):
    """A poll failed (``poll`` names it); an unreachable server marks the data stale."""

    def __init__(self, poll: str, error: OpsError, at: float) -> None:
        super().__init__()
        self.poll = poll
        self.error = error
        self.at = at


class Loaded(Message):
    """A panel's on-demand request finished: ``value`` is what ``key`` asked for."""

    def __init__(self, key: str, value: Any) -> None:
        super().__init__()
        self.key = key
        self.value = value


class LoadFailed(Message):
    def __init__(self, key: str, error: OpsError) -> None:
        super().__init__()
        self.key = key
        self.error = error


class ActionDone(Message):
    """A write finished; ``summary`` is one line for the operator."""

    def __init__(self, action: str, summary: str, warnings: list[str]) -> None:
        super().__init__()
        self.action = action
        self.summary = summary
        self.warnings = warnings


class ActionFailed(Message):
    def __init__(self, action: str, error: OpsError, warnings: list[str]) -> None:
        super().__init__()
        self.action = action
        self.error = error
        self.warnings = warnings


class TailBatch(Message):
    """Pub/sub events received since the last batch (batched so 1,000 msg/s never floods
    the screen with 1,000 messages a second)."""

    def __init__(self, events: list[TailEvent], dropped: int = 0) -> None:
        super().__init__()
        self.events = events
        self.dropped = dropped


class TailStopped(Message):
    def __init__(self, error: OpsError) -> None:
        super().__init__()
        self.error = error


class TailStatus(Message):
    """The tail (re)subscribed or lost its connection (one line of text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
