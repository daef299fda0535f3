"""The dashboard app: the header, the tabs, the footer, and the polls that feed them.

Data flows one way: polls and requests run in workers and post typed messages; handlers
update :class:`DashboardState` and ask the header and the visible panel to show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, ClassVar

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Select, TabbedContent, TabPane

from echoes_ops.config import Settings
from echoes_ops.errors import AuthError, OpsError, UnreachableError
from echoes_ops.tui import messages as m
from echoes_ops.tui.gcpolicy import GcPolicy
from echoes_ops.tui.keys import KeyQueue
from echoes_ops.tui.modals import HelpScreen
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.audit import AuditPanel
from echoes_ops.tui.panels.broadcast import BroadcastPanel
from echoes_ops.tui.panels.flags import FlagsPanel
from echoes_ops.tui.panels.header import StatusHeader
from echoes_ops.tui.panels.keybar import KeyBar
from echoes_ops.tui.panels.live import LivePanel
from echoes_ops.tui.panels.locations import LocationsPanel
from echoes_ops.tui.panels.locks import LocksPanel
from echoes_ops.tui.panels.overview import OverviewPanel
from echoes_ops.tui.panels.sessions import SessionsPanel
from echoes_ops.tui.panels.workers import WorkersPanel
from echoes_ops.tui.polling import Poll
from echoes_ops.tui.process_source import ProcessSource
from echoes_ops.tui.source import Source
from echoes_ops.tui.tailfeed import run_tail

TABS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("workers", "Workers"),
    ("locations", "Locations"),
    ("sessions", "Sessions"),
    ("locks", "Locks"),
    ("broadcast", "Broadcast"),
    ("live", "Live"),
    ("flags", "Flags"),
    ("audit", "Audit"),
)
TIER_EVERY = 10.0  # seconds between census passes (sessions, stale sessions)
DRIFT_EVERY = 30.0  # seconds between drift detections (the heaviest read)
RETRY_EVERY = 2.0  # seconds between polls while disconnected (at most)


class DashboardApp(App[None]):
    TITLE = "echoes-ops dashboard"
    CSS = """
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("r", "refresh", "Refresh"),
        Binding("l", "latency", "Latency", show=False),
        *[
            Binding(str(i + 1), f"show_tab('{tab}')", label, show=False)
            for i, (tab, label) in enumerate(TABS)
        ],
    ]

    def __init__(
        self,
        source: Source,
        *,
        refresh: float = 2.0,
        read_only: bool = False,
        tier_every: float = TIER_EVERY,
        drift_every: float = DRIFT_EVERY,
        live_tail: bool = True,
    ) -> None:
        super().__init__()
        self.source = source
        if read_only:
            source.read_only = True
        self.state = DashboardState(
            source.display, read_only, postgres=source.postgres, environment=source.environment
        )
        self.live_tail = live_tail
        self.refresh_every = refresh
        clock = source.clock
        self.fast = Poll(self, "snapshot", self._snapshot, refresh, clock)
        self.tier = Poll(self, "tier", self._tier, max(tier_every, refresh), clock)
        self.drift = Poll(self, "drift", self._drift, max(drift_every, refresh), clock)
        self.opened = False
        self.gc_policy = GcPolicy()
        # kept so handlers reach them whatever screen (a modal) is on top
        self.header = StatusHeader(id="header")
        self.tabs = TabbedContent(initial="overview", id="tabs")
        self.live = LivePanel(id="live-panel")
        self.keys = KeyQueue(self, self._route_key)

    # -- keys -----------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        """Keys go through :class:`KeyQueue`: each is handled (focus changes included)
        before the next is routed, however fast they come."""
        if isinstance(event, events.Key) and not event.is_forwarded:
            self.keys.put(event)
            return
        await super().on_event(event)

    async def _route_key(self, event: events.Key) -> None:
        await super().on_event(event)

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.header
        s = self.source
        self.panels: dict[str, Any] = {
            "overview": OverviewPanel(id="overview-panel"),
            "workers": WorkersPanel(s, id="workers-panel"),
            "locations": LocationsPanel(s, id="locations-panel"),
            "sessions": SessionsPanel(s, id="sessions-panel"),
            "locks": LocksPanel(s, id="locks-panel"),
            "broadcast": BroadcastPanel(s, id="broadcast-panel"),
            "live": self.live,
            "flags": FlagsPanel(s, id="flags-panel"),
            "audit": AuditPanel(s, id="audit-panel"),
        }
        with self.tabs:
            for tab, label in TABS:
                with TabPane(label, id=tab):
                    yield self.panels[tab]
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.gc_policy.start()
        self._render()
        self.run_worker(self._open(), group="open", exclusive=True)
        self.fast.run_now()
        if self.live_tail:
            self.run_worker(run_tail(self, self.source), group="tail")

    async def on_unmount(self) -> None:
        self.gc_policy.restore()
        await self.source.close()

    def active_panel(self) -> Any:
        return self.panels[self.tabs.active or "overview"]

    def _render(self) -> None:
        if not self.is_running or not self.header.is_mounted:
            return  # shutting down: widgets are being removed
        self.header.show_state(self.state)
        panel = self.active_panel()
        self.live.showing = panel is self.live
        if panel.is_mounted and panel.children and hasattr(panel, "show_state"):
            panel.show_state(self.state)
        for hidden in self.panels.values():  # a big table filled while nobody looks at it
            if hidden is not panel and hasattr(hidden, "prefill"):
                hidden.prefill(self.state)

    # -- polls ----------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            access = await self.source.open()
        except OpsError as exc:
            self.post_message(m.SourceFailed("open", exc, self.source.clock()))
            return
        self.post_message(m.Opened(access))

    async def _snapshot(self) -> m.SnapshotReady:
        return m.SnapshotReady(await self.source.snapshot())

    async def _tier(self) -> m.TierReady:
        return m.TierReady(await self.source.tier())

    async def _drift(self) -> m.DriftReady:
        return m.DriftReady(await self.source.drift())

    def on_opened(self, message: m.Opened) -> None:
        self.opened = True
        self.state.access = message.access
        if not message.access.writable:
            self.notify(f"read-only: {message.access.reason}", severity="warning", timeout=15)
        self.refresh_bindings()
        self._render()

    def on_snapshot_ready(self, message: m.SnapshotReady) -> None:
        reconnected = self.state.connected is False
        self.state.snapshot = message.snapshot
        self.state.history.add(message.snapshot.counters)
        self.state.mark_connected()
        if reconnected:
            self.notify("Redis is back: reconnected", timeout=5)
        if reconnected or not self.opened:
            self.run_worker(self._open(), group="open", exclusive=True)
        for poll in (self.tier, self.drift):
            if reconnected or not poll.started:
                poll.run_now()
        self._render()
        self.fast.done()
        if not self.gc_policy.settled:
            self.call_after_refresh(self.gc_policy.settle)  # once the first data is shown

    def on_tier_ready(self, message: m.TierReady) -> None:
        self.state.tier = message.tier
        self._render()
        self.tier.done()

    def on_drift_ready(self, message: m.DriftReady) -> None:
        self.state.drift = message.drift
        self._render()
        self.drift.done()

    def on_source_failed(self, message: m.SourceFailed) -> None:
        error = message.error
        if isinstance(error, UnreachableError | AuthError):
            if self.state.connected is not False:
                self.notify(f"Redis unreachable: {error}", severity="error", timeout=8)
            self.state.mark_disconnected(message.at, str(error))
        else:
            self.notify(f"{message.poll} failed: {error}", severity="error", timeout=8)
        self._render()
        poll = {"snapshot": self.fast, "tier": self.tier, "drift": self.drift}.get(message.poll)
        if poll is not None:
            retry = min(poll.interval, RETRY_EVERY) if poll is self.fast else None
            poll.done(retry if self.state.connected is False else None)

    # -- actions and the live tail ----------------------------------------------------------

    def on_action_done(self, message: m.ActionDone) -> None:
        self.notify(message.summary, title=message.action, timeout=8)
        for warning in message.warnings:
            self.notify(warning, severity="warning", timeout=10)
        self.fast.run_now()

    def on_action_failed(self, message: m.ActionFailed) -> None:
        self.notify(
            str(message.error), title=f"{message.action} failed", severity="error", timeout=12
        )
        for warning in message.warnings:
            self.notify(warning, severity="warning", timeout=10)

    def on_tail_batch(self, message: m.TailBatch) -> None:
        self.live.add_events(message.events, message.dropped)

    def on_tail_status(self, message: m.TailStatus) -> None:
        self.live.set_status(message.text)

    def on_tail_stopped(self, message: m.TailStopped) -> None:
        self.live.set_status(f"not subscribed: {message.error}; retrying")

    # -- navigation -------------------------------------------------------------------------

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._render()
        self._focus_panel()

    def _focus_panel(self) -> None:
        """Move focus into the shown panel (its table, log or first selector, else nothing):
        a widget left focused in a hidden pane would make the tabs switch back to it. Never
        a text box: the tab keys would type into it. Nothing once the app is closing (a tab
        key that lands as it quits found no screen and ended in a traceback)."""
        if not self.screen_stack:
            return
        panel = self.active_panel()
        for kind in (DataTable, RichLog, Select):
            found = panel.query(kind)
            if found:
                found.first().focus()
                return
        if panel.focusable:
            panel.focus()
        else:
            self.set_focus(None)

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab

    def action_refresh(self) -> None:
        self.fast.run_now()
        self.tier.run_now()

    def action_help(self) -> None:
        # built once and kept: composing it again, and the new screen's first resize
        # laying out the whole dashboard behind it, cost more than the rest of the key
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(), "help")
        self.push_screen("help")

    def action_latency(self) -> None:
        from echoes_ops.tui.panels.latency import LatencyScreen

        self.push_screen(LatencyScreen(self.source))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab, label in TABS:
            yield SystemCommand(
                f"Go to {label}", f"Show the {label} tab", partial(self.action_show_tab, tab)
            )
        yield SystemCommand("Refresh now", "Poll Redis now", self.action_refresh)
        yield SystemCommand("Keys and help", "Show every key binding", self.action_help)
        yield SystemCommand(
            "Redis latency", "SLOWLOG, latency events, round trip", self.action_latency
        )
        if not self.state.read_only:
            yield SystemCommand("Hold a lock", "Take a lock as operator", self._palette_hold)
            yield SystemCommand("Flip REDIS_ENABLED", "Asks for a reason", self._palette_flip)

    def _palette_hold(self) -> None:
        self.action_show_tab("locks")
        self.panels["locks"].action_hold()

    def _palette_flip(self) -> None:
        self.action_show_tab("flags")
        self.panels["flags"].action_flip()


def create_app(
    settings: Settings,
    *,
    refresh: float = 2.0,
    read_only: bool = False,
    source: Source | None = None,
    **options: Any,
) -> DashboardApp:
    """The dashboard for ``settings`` (or for ``source``: tests pass a fake one). By
    default its source runs in a poller process of its own (:mod:`echoes_ops.tui.poller`)."""
    chosen = source if source is not None else ProcessSource(settings, read_only=read_only)
    return DashboardApp(chosen, refresh=refresh, read_only=read_only, **options)
