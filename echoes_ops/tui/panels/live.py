"""Live pub/sub: a scrolling, filterable tail of decoded messages (operations/tail/)."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, RichLog, Static

from echoes_ops.fmt import clock_time, duration
from echoes_ops.operations.tail import TailEvent, TailGap, TailMessage
from echoes_ops.tui.panels.styleonce import DashLog

KEEP = 2000  # events kept for re-filtering
SHOW_PER_BATCH = 25  # lines drawn per batch (about 6 a second) at most; the rest counted
REDRAW = 100  # lines drawn at most when the tab is shown again or the filter changes

TYPE_STYLES = {
    "global_broadcast": "bold magenta",
    "location_update": "cyan",
    "personal_message": "green",
    "undecodable": "bold red",
}


def tail_line(event: TailEvent) -> Text:
    """One line for a message, or a gap notice."""
    if isinstance(event, TailGap):
        return Text(
            f"{clock_time(event.reconnected_at)} -- connection lost for {duration(event.duration)} "
            f"({event.error}); messages published meanwhile are lost",
            style="bold yellow",
        )
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{clock_time(event.received_at)} ", style="dim")
    line.append(f"{event.type:<17} ", style=TYPE_STYLES.get(event.type, "white"))
    line.append(f"{event.channel:<22} ", style="dim")
    line.append(event.summary)
    return line


def matches(event: TailEvent, needle: str) -> bool:
    """Case-insensitive substring of channel, type or summary; gaps always show."""
    if not needle or isinstance(event, TailGap):
        return True
    text = f"{event.channel} {event.type} {event.summary}".casefold()
    return all(word in text for word in needle.casefold().split())


def write_lines(log: RichLog, lines: list[Text]) -> None:
    """Append ``lines`` to ``log`` in one write: one render, one scroll and one repaint for
    the batch (a write per line did each of those per line). At the log's width: lines are
    cut there anyway, and a given width spares measuring every line first."""
    if lines:
        width = log.scrollable_content_region.width
        log.write(Group(*lines), width=width if width > 0 else None)


def redraw_count(log: RichLog) -> int:
    """How many lines a redraw builds: what the log shows (plus a few), at most REDRAW; the
    screen's height before the log was ever laid out (a tab not shown yet)."""
    height = log.scrollable_content_region.height or log.app.size.height
    return min(REDRAW, height + 5)


class LivePanel(Vertical):
    DEFAULT_CSS = """
    LivePanel > Input { height: 1; }
    LivePanel > .hint { height: 1; color: $text-muted; }
    LivePanel > RichLog { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("space", "pause", "Pause"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: deque[TailEvent] = deque(maxlen=KEEP)
        self.needle = ""
        self.paused = False
        self.received = 0
        self.hidden = 0
        self.status = "connecting…"
        self.showing = False  # the Live tab is the one shown
        self.behind = False  # events arrived while hidden: redraw when shown
        self.last_gap: TailGap | None = None  # kept in the status line: the log scrolls it away

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: words in channel, type or text — Enter", compact=True, id="filter"
        )
        yield Static(self.status, classes="hint")
        yield DashLog(max_lines=1000, wrap=False, markup=False, auto_scroll=True)

    def _hint(self) -> None:
        state = "PAUSED (space to resume)" if self.paused else "space pause, c clear"
        shown = f"filter '{self.needle}'" if self.needle else "no filter"
        gap = self.last_gap
        self.query_one(".hint", Static).update(  # one line: a repaint, no layout
            f"{self.status} — {self.received:,} received, {shown}, {state}"
            + (f", {self.hidden:,} not shown" if self.hidden else "")
            + (
                f" — last gap {clock_time(gap.reconnected_at)}: {duration(gap.duration)} lost"
                if gap
                else ""
            ),
            layout=False,
        )

    def set_status(self, text: str) -> None:
        self.status = text
        if self.is_mounted:
            self._hint()

    def add_events(self, events: list[TailEvent], dropped: int = 0) -> None:
        """Keep the events; draw them only while the tab is shown (drawing is what costs)."""
        self.events.extend(events)
        for event in events:
            if isinstance(event, TailGap):
                self.last_gap = event
        self.received += sum(1 for e in events if isinstance(e, TailMessage)) + dropped
        if not self.is_mounted or not self.children:
            return
        if not self.showing:
            self.behind = True
            return
        if not self.paused:
            shown = [e for e in events if matches(e, self.needle)]
            lines = [tail_line(event) for event in shown[-SHOW_PER_BATCH:]]
            skipped = max(0, len(shown) - SHOW_PER_BATCH) + dropped
            if skipped:
                self.hidden += skipped
                lines.insert(0, Text(f"… {skipped:,} more messages not drawn", style="dim"))
            write_lines(self.query_one(RichLog), lines)
        self._hint()

    def redraw(self) -> None:
        self.behind = False
        log = self.query_one(RichLog)
        log.clear()
        shown = [e for e in self.events if matches(e, self.needle)][-redraw_count(log) :]
        write_lines(log, [tail_line(e) for e in shown])  # only the lines drawn are built
        self._hint()

    def show_state(self, state: object) -> None:
        """Called when the tab is shown (and on every refresh while it is)."""
        if self.behind and not self.paused:
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.needle = event.value.strip()
        self.redraw()
        self.query_one(RichLog).focus()

    def action_filter(self) -> None:
        """Focus the filter box (Enter applies it and returns to the log)."""
        self.query_one(Input).focus()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.redraw()
        self._hint()

    def action_clear(self) -> None:
        self.events.clear()
        self.hidden = 0
        self.last_gap = None
        self.query_one(RichLog).clear()
        self._hint()
