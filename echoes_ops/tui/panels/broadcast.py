"""Broadcast: compose a global, location or personal message, preview the exact envelope
and who listens, then send it after a confirmation."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Select, Static

from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.tui.jobs import act, load
from echoes_ops.tui.messages import ActionDone, Loaded, LoadFailed
from echoes_ops.tui.modals import ConfirmScreen
from echoes_ops.tui.model import BroadcastDraft, BroadcastPlan, DashboardState
from echoes_ops.tui.panels.base import error_text
from echoes_ops.tui.source import Source

KIND_OPTIONS = [("global: every player", "global"), ("location", "location"), ("player", "player")]


def render_plan(plan: BroadcastPlan) -> RenderableType:
    """The exact envelope (as JSON) and its audience."""
    result = plan.preview
    body = json.dumps(result.envelope, indent=2, ensure_ascii=False)
    audience = Text()
    audience.append(f"reaches {_players(result)}", style="bold")
    audience.append(
        f" through {result.audience.channel_subscribers} worker subscription(s) to {result.channel}"
    )
    if result.audience.patterns:
        audience.append(
            f" (and up to {result.audience.patterns} pattern subscription(s) on the server)",
            style="dim",
        )
    note = Text("sent_at is stamped anew when you send; everything else goes as shown", style="dim")
    return Group(audience, Syntax(body, "json", word_wrap=True, theme="ansi_dark"), note)


def _players(result: BroadcastResult) -> str:
    """``1,000 players (1,012 connections)``: who it is for, not the Redis clients."""
    return result.reach.words() if result.reach is not None else "? players"


def describe_sent(result: BroadcastResult) -> str:
    return (
        f"published on {result.channel} for {_players(result)}: "
        f"{result.receivers} subscriber(s) received it"
    )


class BroadcastPanel(Vertical):
    DEFAULT_CSS = """
    BroadcastPanel { padding: 0 1; }
    BroadcastPanel .row { height: auto; }
    BroadcastPanel Select { width: 28; }
    BroadcastPanel #target { width: 1fr; }
    BroadcastPanel #message { margin-top: 1; }
    BroadcastPanel .buttons { height: auto; margin-top: 1; }
    BroadcastPanel .buttons Button { margin-right: 2; }
    BroadcastPanel #preview-box { height: 1fr; border-top: solid $primary-background; }
    """

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.plan: BroadcastPlan | None = None
        self.read_only = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Select(KIND_OPTIONS, value="global", allow_blank=False, compact=True, id="kind")
            yield Input(
                placeholder="location id or player id (not for global)", compact=True, id="target"
            )
        yield Input(placeholder="message players will see", compact=True, id="message")
        with Horizontal(classes="buttons"):
            yield Button("Preview", id="preview", compact=True)
            yield Button("Send…", id="send", variant="warning", compact=True)
        with VerticalScroll(id="preview-box"):
            yield Static(
                Text(
                    "Tab moves between the fields and buttons. Preview shows the exact "
                    "envelope and who listens before anything is sent.",
                    style="dim",
                ),
                id="preview-text",
            )

    def show_state(self, state: DashboardState) -> None:
        if self.read_only != state.read_only:
            self.read_only = state.read_only
            self.query_one("#send", Button).display = not state.read_only

    def draft(self) -> BroadcastDraft:
        kind = self.query_one("#kind", Select).value
        return BroadcastDraft(
            kind=str(kind),
            target=self.query_one("#target", Input).value,
            message=self.query_one("#message", Input).value,
        )

    def _show(self, renderable: RenderableType) -> None:
        self.query_one("#preview-text", Static).update(renderable)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "preview":
            self.preview()
        elif event.button.id == "send":
            self.send()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.preview()

    def preview(self) -> None:
        draft = self.draft()
        self.plan = None
        self._show(Text("building the envelope…", style="dim"))
        load(self, "preview", lambda: self.source.preview_broadcast(draft))

    def send(self) -> None:
        if self.read_only:
            self.notify("read-only: broadcast refused", severity="warning")
            return
        plan = self.plan
        if plan is None or plan.draft != self.draft():
            self.notify(
                "preview it first: Send publishes exactly what the preview showed",
                severity="warning",
            )
            return

        def confirmed(reason: str | None) -> None:
            if reason is not None:
                act(
                    self,
                    self.source,
                    f"broadcast.{plan.draft.kind}",
                    lambda: self.source.send_broadcast(plan),
                    describe_sent,
                )

        self.app.push_screen(
            ConfirmScreen(
                f"Publish on {plan.preview.channel}?",
                render_plan(plan),
                confirm_label="Send",
                reason=False,
            ),
            confirmed,
        )

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "preview" and isinstance(message.value, BroadcastPlan):
            message.stop()
            self.plan = message.value
            self._show(render_plan(message.value))

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "preview":
            message.stop()
            self._show(error_text(f"not sent: {message.error}"))

    def on_action_done(self, message: ActionDone) -> None:
        if message.action.startswith("broadcast."):
            self._show(Text(message.summary, style="green"))
            self.plan = None
