"""Locks: owner, TTL counting down, owner alive; hold, release, force release."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.binding import Binding, BindingType

from echoes_ops.fmt import duration, ttl_ms
from echoes_ops.operations.locks import HoldResult, LockInfo, ReleaseResult
from echoes_ops.primitives.lock import operator_owner
from echoes_ops.tui.jobs import act, load
from echoes_ops.tui.messages import Loaded, LoadFailed
from echoes_ops.tui.modals import ConfirmScreen, HoldRequest, HoldScreen
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import Row, TablePanel
from echoes_ops.tui.source import Source


def remaining(info: LockInfo, elapsed: float) -> str:
    """The lock's TTL as of ``elapsed`` seconds after it was read (counting down)."""
    if info.ttl_ms < 0:
        return ttl_ms(info.ttl_ms)
    left = info.ttl_ms / 1000 - elapsed
    return "expired?" if left <= 0 else duration(left)


def _alive(info: LockInfo) -> Text:
    if info.owner_kind == "operator":
        state = Text("operator hold", style="cyan")
    elif info.alive:
        state = Text("alive", style="green")
    elif info.liveness.startswith("unresponsive"):
        state = Text("UNRESPONSIVE", style="bold red")
    else:
        state = Text("NOT alive", style="bold red")
    if info.stale_claims:
        state.append(f"; {', '.join(info.stale_claims)} still claims it!", style="bold yellow")
    return state


def lock_rows(locks: list[LockInfo], elapsed: float) -> list[Row]:
    return [
        (
            info.name,
            (
                info.name,
                info.owner,
                Text(remaining(info, elapsed), style="red" if info.no_ttl else ""),
                _alive(info),
                (info.hold or {}).get("reason", ""),
            ),
        )
        for info in locks
    ]


def render_lock(info: LockInfo, elapsed: float = 0.0) -> RenderableType:
    head = Text()
    head.append(f"{info.key}", style="bold")
    head.append(f"  owner {info.owner} ({info.owner_kind})  TTL {remaining(info, elapsed)}")
    lines = [
        head,
        Text.assemble("owner alive: ", _alive(info), f"  ({info.liveness})"),
        Text(f"value: {info.value}", style="dim"),
    ]
    if info.hold:
        lines.append(
            Text(
                f"held by operator {info.hold.get('operator', '?')}: {info.hold.get('reason', '')}",
                style="cyan",
            )
        )
    if info.no_ttl:
        lines.append(Text("no TTL: this lock never expires by itself", style="bold red"))
    return Group(*lines)


def describe_hold(result: HoldResult) -> str:
    return f"holding {result.key} as {result.owner} for {ttl_ms(result.ttl_ms)}"


def describe_release(result: ReleaseResult) -> str:
    if result.released:
        how = "force-released" if result.forced else "released"
        return f"{how} {result.key} (owner {result.owner})"
    return f"{result.key}: {result.note or 'nothing released'}"


class LocksPanel(TablePanel):
    COLUMNS = ("lock", "owner", "TTL", "owner alive", "reason")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "hold", "Hold"),
        Binding("d", "release", "Release mine"),
        Binding("f", "force", "Force release"),
    ]

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(source, id=id)
        self.locks: list[LockInfo] = []
        self.read_at = 0.0
        self.read_only = False

    def on_mount(self) -> None:  # TablePanel.on_mount runs too (Textual calls both)
        self.set_interval(1.0, self._tick)

    def show_state(self, state: DashboardState) -> None:
        if self.read_only != state.read_only:
            self.read_only = state.read_only
            self.refresh_bindings()
        snap = state.snapshot
        if snap is None:
            return
        self.locks, self.read_at = snap.locks, snap.taken_at
        self._tick()
        writes = "" if state.read_only else " — h hold, d release yours, f force release"
        stale = "  STALE" if state.stale else ""
        count = len(snap.locks)
        self.set_hint(f"{count} lock{'' if count == 1 else 's'}{writes}{stale}")

    def _tick(self) -> None:
        if not self.app.is_running:
            return  # shutting down: the table may already be gone
        if self.locks or self.table.row_count:
            self.set_rows(lock_rows(self.locks, self.source.clock() - self.read_at))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in ("hold", "release", "force") and self.read_only)

    def drill(self, key: str) -> None:
        load(self, "detail:lock", lambda: self.source.lock_detail(key))

    def render_detail(self, value: object) -> RenderableType:
        return render_lock(value) if isinstance(value, LockInfo) else Text(str(value))

    def _refuse(self) -> bool:
        if self.read_only:
            self.notify("read-only: lock changes refused", severity="warning")
        return self.read_only

    def action_hold(self) -> None:
        if self._refuse():
            return

        def chosen(request: HoldRequest | None) -> None:
            if request is not None:
                act(
                    self,
                    self.source,
                    "locks.hold",
                    lambda: self.source.hold_lock(request.name, request.ttl, request.reason),
                    describe_hold,
                )

        self.app.push_screen(HoldScreen(), chosen)

    def action_release(self) -> None:
        if self._refuse() or (name := self.cursor_key()) is None:
            return
        mine = operator_owner(self.source.operator)
        held = next((info for info in self.locks if info.name == name), None)
        if held is not None and held.owner != mine:
            self.notify(
                f"{held.key} is held by {held.owner}, not by you ({mine}); "
                "f force-releases it after showing whether its owner is alive",
                severity="warning",
                timeout=8,
            )
            return

        def confirmed(reason: str | None) -> None:
            if reason is not None:
                act(
                    self,
                    self.source,
                    "locks.release",
                    lambda: self.source.release_lock(name),
                    describe_release,
                )

        body = Text("Deleted only while it still holds your value (compare-and-delete).")
        self.app.push_screen(
            ConfirmScreen(
                f"Release lock:{name}?", body, confirm_label="Release", reason=False, danger=False
            ),
            confirmed,
        )

    def action_force(self) -> None:
        """Read the lock afresh, then show its owner's liveness before asking."""
        if self._refuse() or (name := self.cursor_key()) is None:
            return
        load(self, "force", lambda: self.source.lock_detail(name))

    def on_loaded(self, message: Loaded) -> None:
        if message.key != "force" or not isinstance(message.value, LockInfo):
            return
        message.stop()
        info = message.value

        def confirmed(reason: str | None) -> None:
            if reason is not None:
                act(
                    self,
                    self.source,
                    "locks.release.force",
                    lambda: self.source.force_release_lock(info.name, info.value, reason),
                    describe_release,
                )

        warning = (
            Text(
                "The owner may still be working: breaking its lock can let two run at once.",
                style="bold red",
            )
            if info.owner_may_be_active
            else Text("The owner is not alive.", style="green")
        )
        body = Group(
            render_lock(info), warning, Text("Deleted only while it still holds this value.")
        )
        self.app.push_screen(
            ConfirmScreen(f"Force release {info.key}?", body, confirm_label="Force release"),
            confirmed,
        )

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "force":
            message.stop()
            self.notify(str(message.error), severity="error")
