"""Flags: REDIS_ENABLED in each source and each live worker's acknowledged mode; flip it."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from echoes_ops.fmt import duration, maybe
from echoes_ops.operations.flags import FlagStatus, SetResult
from echoes_ops.tui.jobs import act, load
from echoes_ops.tui.messages import ActionDone, Loaded, LoadFailed
from echoes_ops.tui.modals import ConfirmScreen
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import error_text
from echoes_ops.tui.source import Source

RELOAD_AFTER = 10.0  # seconds between reads while the tab is shown
RELOAD_PENDING = 2.0  # ... while a live worker has not applied the value yet (after a flip)
NO_POSTGRES = (
    "PostgreSQL is not configured (DATABASE_URL): REDIS_ENABLED's source of truth cannot be "
    "read here and the switch cannot be flipped from this dashboard."
)


def render_flag(status: FlagStatus, *, postgres: bool) -> RenderableType:
    head = Text()
    head.append(f"{status.name} = ", style="bold")
    expected = status.expected
    head.append(expected or "unknown", style="bold green" if expected == "true" else "bold red")
    head.append("  (PostgreSQL, the source of truth)" if expected else "")
    sources = Table("source", "state", "value", "detail", box=None, pad_edge=False, title="sources")
    for s in status.sources:
        sources.add_row(s.source, s.state, maybe(s.effective), Text(s.detail, overflow="fold"))
    workers = Table(
        "worker",
        "mode",
        "REDIS_ENABLED",
        "applied",
        "heartbeat",
        box=None,
        pad_edge=False,
        title="live workers",
    )
    for w in status.workers:
        applied = {
            True: Text("yes", style="green"),
            False: Text("NO", style="bold red"),
            None: Text("?"),
        }[w.applied]
        age = duration(w.heartbeat_age) if w.heartbeat_age is not None else "?"
        workers.add_row(w.worker_id, maybe(w.mode), maybe(w.redis_enabled), applied, age)
    parts: list[RenderableType] = [head]
    if not postgres:
        parts.append(Text(NO_POSTGRES, style="bold yellow"))
    parts += [Text(p, style="red") for p in status.problems]
    parts += [Text(n, style="yellow") for n in status.notes]
    parts += [
        sources,
        workers if status.workers else Text("no live worker reports a mode", style="dim"),
    ]
    return Group(*parts)


NO_ENV_FILE = (
    "No env file is configured (dashboard --env-file, ECHOES_OPS_ENV_FILE): PostgreSQL and "
    "the Redis mirror change, but a worker restarted later reads REDIS_ENABLED from its own "
    "env file, which keeps the old value. Edit it by hand, or quit and restart the dashboard "
    "with --env-file."
)


def flip_body(new: str, current: str, env_file: str | None) -> RenderableType:
    what = (
        "workers stop using Redis (fallback: PostgreSQL reads, in-process connections)"
        if new == "false"
        else "workers use Redis again"
    )
    where = f"the env file {env_file}" if env_file else "no env file"
    parts: list[RenderableType] = [
        Text(
            f"Set REDIS_ENABLED={new} (now {current}) in PostgreSQL (workers switch within a "
            f"second), {where}, and the Redis mirror: {what}."
        )
    ]
    if not env_file:
        parts.append(Text("\n" + NO_ENV_FILE, style="bold yellow"))
    return Group(*parts)


def describe_set(result: SetResult) -> str:
    targets = ", ".join(f"{t.target} {t.status}" for t in result.targets)
    return f"{result.name}: {result.previous} -> {result.value} ({targets})"


class FlagsPanel(VerticalScroll):
    DEFAULT_CSS = "FlagsPanel { padding: 0 1; }"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("t", "flip", "Flip REDIS_ENABLED")]

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.status: FlagStatus | None = None
        self.loaded_at: float | None = None
        self.read_only = False

    def compose(self) -> ComposeResult:
        yield Static(Text("reading REDIS_ENABLED…", style="dim"), id="flag-text")

    def show_state(self, state: DashboardState) -> None:
        if self.read_only != state.read_only:
            self.read_only = state.read_only
            self.refresh_bindings()
        now = self.source.clock()
        # right after a flip the workers switch within a second: read again soon, so their
        # "applied: NO" is not left on the screen for the whole RELOAD_AFTER
        pending = self.status is not None and bool(self.status.stale_workers)
        every = RELOAD_PENDING if pending else RELOAD_AFTER
        if self.loaded_at is None or now - self.loaded_at >= every:
            self.loaded_at = now
            load(self, "flag", self.source.flag_status)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "flip":
            return not self.read_only and self.source.postgres
        return True

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "flag" and isinstance(message.value, FlagStatus):
            message.stop()
            self.status = message.value
            self.query_one("#flag-text", Static).update(
                render_flag(message.value, postgres=self.source.postgres)
            )

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "flag":
            message.stop()
            self.query_one("#flag-text", Static).update(error_text(str(message.error)))

    def action_flip(self) -> None:
        if self.read_only or not self.source.postgres:
            self.notify(
                "flag change refused: " + ("read-only" if self.read_only else NO_POSTGRES),
                severity="warning",
            )
            return
        current = self.status.expected if self.status else None
        if current is None:
            self.notify(
                "REDIS_ENABLED's current value is unknown: not flipping", severity="warning"
            )
            return
        new = "false" if current == "true" else "true"
        body = flip_body(new, current, self.source.env_file)
        title = f"set REDIS_ENABLED={new} (now {current})?"

        def confirmed(reason: str) -> None:
            act(
                self,
                self.source,
                "flags.set",
                lambda: self.source.set_flag(new, reason),
                describe_set,
            )

        def reasoned(reason: str | None) -> None:
            if reason is None:
                return
            # step 2: the same facts and the reason, Cancel focused: Enter does not flip
            second = Group(body, Text(f"\nreason: {reason}", style="bold"))
            self.app.push_screen(
                ConfirmScreen(
                    f"Step 2/2, confirm: {title}", second, confirm_label=f"Set {new}", reason=False
                ),
                lambda ok: confirmed(reason) if ok is not None else None,
            )

        # step 1: why (required); nothing changes until step 2 is confirmed
        self.app.push_screen(
            ConfirmScreen(f"Step 1/2, why: {title}", body, confirm_label="Next"), reasoned
        )

    def on_action_done(self, message: ActionDone) -> None:
        if message.action == "flags.set":
            self.loaded_at = self.source.clock()
            load(self, "flag", self.source.flag_status)
