"""Latency (key ``l``): SLOWLOG, the latency monitor's events and a round-trip sample, the
same report and rendering as ``echoes-ops latency`` (:mod:`echoes_ops.tui.latency_view`)."""

from __future__ import annotations

from typing import ClassVar, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from echoes_ops.operations.latency import LatencyReport
from echoes_ops.tui.jobs import load
from echoes_ops.tui.latency_view import render_latency
from echoes_ops.tui.messages import Loaded, LoadFailed
from echoes_ops.tui.modals import modal_css
from echoes_ops.tui.panels.base import error_text
from echoes_ops.tui.source import Source

SAMPLES: Final = 20  # PINGs per reading (the dashboard's poller sends them one by one)


class LatencyScreen(ModalScreen[None]):
    """Read once when opened; ``r`` reads again."""

    DEFAULT_CSS = (
        modal_css("LatencyScreen")
        + """
    LatencyScreen > Vertical { max-width: 120; }
    LatencyScreen VerticalScroll { max-height: 30; }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,l", "close", "Close"),
        Binding("r", "reload", "Read again"),
    ]

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.report: LatencyReport | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Redis latency", classes="title")
            with VerticalScroll():
                yield Static(
                    Text("reading SLOWLOG and LATENCY ...", style="dim"), id="latency-text"
                )
            with Horizontal(classes="buttons"):
                yield Button("Read again", id="reload", compact=True)
                yield Button("Close", id="close", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        load(self, "latency", lambda: self.source.latency(SAMPLES))

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "latency" and isinstance(message.value, LatencyReport):
            message.stop()
            self.report = message.value
            self.query_one("#latency-text", Static).update(render_latency(message.value))

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "latency":
            message.stop()
            self.query_one("#latency-text", Static).update(error_text(str(message.error)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "reload":
            self.action_reload()
        else:
            self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
