"""Modal screens: confirm a write (with a reason), hold a lock, and the help screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from echoes_ops.config import looks_like_production, on_environment
from echoes_ops.errors import OpsError
from echoes_ops.operations.writes import lock_ttl


def modal_css(name: str) -> str:
    """The look of a modal (per class: a widget's default CSS is scoped to its class)."""
    return f"""
    {name} {{ align: center middle; background: $background 60%; }}
    {name} > Vertical {{
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }}
    {name} .title {{ text-style: bold; margin-bottom: 1; }}
    {name} VerticalScroll {{ height: auto; max-height: 14; }}
    {name} Input {{ margin-bottom: 1; }}
    {name} .buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
    {name} .buttons Button {{ margin-left: 2; }}
    {name} .error {{ color: $error; height: auto; }}
    {name} .hint {{ color: $text-muted; height: auto; margin-bottom: 1; }}
    """


class ConfirmScreen(ModalScreen[str | None]):
    """Shows what will happen; dismisses with the reason typed (``""`` when no reason is
    asked) on confirm, or None on cancel."""

    DEFAULT_CSS = modal_css("ConfirmScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        body: RenderableType,
        *,
        confirm_label: str = "Confirm",
        reason: bool = True,
        danger: bool = True,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.ask_reason = reason
        self.danger = danger

    def compose(self) -> ComposeResult:
        # the question names the environment it acts on ("Kick player 42 on prod?"), as the
        # CLI's confirmations do (the app's state holds it; None when not named)
        environment = getattr(getattr(self.app, "state", None), "environment", None)
        title = Text(on_environment(self.title_text, environment), style="bold")
        if environment and looks_like_production(environment):
            start = title.plain.rfind(f" on {environment}?") + len(" on ")
            title.stylize("bold reverse red", start, start + len(environment))
        with Vertical():
            yield Label(title, classes="title")
            with VerticalScroll():
                yield Static(self.body, id="confirm-body")
            if self.ask_reason:
                yield Input(
                    placeholder="reason (required, recorded in the audit trail)",
                    compact=True,
                    id="reason",
                )
            yield Static("", classes="error", id="confirm-error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(
                    self.confirm_label,
                    id="confirm",
                    variant="error" if self.danger else "primary",
                    compact=True,
                )

    def on_mount(self) -> None:
        # set now (not after a refresh): keys typed while the modal opened are meant for it
        if self.ask_reason:
            self.set_focus(self.query_one("#reason", Input))
        else:
            self.set_focus(self.query_one("#cancel", Button))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self._confirm()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._confirm()

    def _confirm(self) -> None:
        reason = self.query_one("#reason", Input).value.strip() if self.ask_reason else ""
        if self.ask_reason and not reason:
            self.query_one("#confirm-error", Static).update("a reason is required")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class HoldRequest:
    name: str
    ttl: str  # as locks hold --ttl takes it: 600, 90s, 30m, 1h30m
    reason: str


class HoldScreen(ModalScreen[HoldRequest | None]):
    """Asks for the lock's name, how long to hold it, and why."""

    DEFAULT_CSS = modal_css("HoldScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.lock_name = name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                "Hold a lock (its background task pauses while you hold it)", classes="title"
            )
            yield Static(
                "lock name, how long (600, 90s, 30m, 1h30m: as locks hold --ttl), reason "
                "(Tab: next field, Enter: hold)",
                classes="hint",
            )
            yield Input(
                self.lock_name, placeholder="lock name, e.g. spawn_manager", compact=True, id="name"
            )
            yield Input("10m", placeholder="how long, e.g. 30m or 1h30m", compact=True, id="ttl")
            yield Input(placeholder="reason (required)", compact=True, id="reason")
            yield Static("", classes="error", id="hold-error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Hold", id="confirm", variant="primary", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        reason = self.query_one("#reason", Input).value.strip()
        error = self.query_one("#hold-error", Static)
        ttl = self.query_one("#ttl", Input).value.strip()
        try:
            lock_ttl(ttl)  # the parser locks hold --ttl uses
        except OpsError as exc:
            error.update(str(exc))
            return
        if not name or not reason:
            error.update("a lock name and a reason are required")
            return
        self.dismiss(HoldRequest(name, ttl, reason))

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
[b]Tabs[/b]  1 overview  2 workers  3 locations  4 sessions  5 locks
      6 broadcast  7 live  8 flags  9 audit  (or click a tab)
[b]Keys[/b]  r refresh now  ? help  ctrl+p command palette  q quit
      l latency (SLOWLOG, latency events, round trip)
[b]Tables[/b]  up/down move, Enter shows the row's details
[b]Sessions[/b]  / search (an id, or part of a name)
      n next page (paged through SCAN)  k kick (asks why)
[b]Locks[/b]  h hold  d release yours
      f force release (shows the owner's liveness, asks why)
[b]Broadcast[/b]  Tab between fields; Preview shows the exact envelope
      and listeners; Send asks before publishing it
[b]Live[/b]  filter: words in channel, type or text
      / filter  space pause  c clear
[b]Flags[/b]  t flip REDIS_ENABLED (asks why, then confirms)

Every write runs the CLI's operation and is audited. --read-only
(or an ACL user that may not write) hides and refuses writes.
If Redis goes away the header says since when, the panels keep
the last data marked stale, and the dashboard reconnects itself.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = modal_css("HelpScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("echoes-ops dashboard — keys", classes="title")
            with VerticalScroll():
                yield Static(HELP, markup=True)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
