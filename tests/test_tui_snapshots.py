"""Snapshot tests of every screen of the dashboard at 80x24 and 160x48, rendered from the
fixed dataset of ``tests/tui_fake.py`` (fixed clock, UTC, no real server).

Regenerate after an intended change: ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs under ``tests/__snapshots__/test_tui_snapshots/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from echoes_ops.config import Settings
from echoes_ops.tui.app import DashboardApp, create_app
from echoes_ops.tui.model import History
from echoes_ops.tui.panels.broadcast import BroadcastPanel
from tests.tui_fake import FakeSource, counters
from tests.waiting import eventually

SIZES = [(80, 24), (160, 48)]
Step = Callable[[Pilot], Awaitable[None]]


@pytest.fixture(autouse=True)
def _utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def make_app(**fake: bool) -> DashboardApp:
    app = create_app(
        Settings.from_dsn("redis://redis.example:6379/0"),
        refresh=3600,
        read_only=bool(fake.get("read_only", False)),
        source=FakeSource(**fake),
        tier_every=3600,
        drift_every=3600,
    )
    app.animation_level = "none"  # no tab underline animation to wait for
    return app


async def settle(pilot: Pilot) -> None:
    """Let workers finish (the fake answers at once) and the screen catch up: a short pause
    for the workers, then until the app is idle and its scheduled scrolls are done (the pause
    alone lost the race on a loaded machine: a table scrolled after the capture)."""
    await pilot.pause(0.05)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    for field in pilot.app.query(Input):
        field.cursor_blink = False


def show(tab: str, *, row: int | None = None, action: str | None = None) -> Step:
    """Show ``tab``; optionally open the detail of table row ``row`` (Enter), then run the
    panel's ``action`` (as its key would). Keys themselves are tested in test_tui_pilot."""

    async def step(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, DashboardApp)
        app.action_show_tab(tab)
        await settle(pilot)
        panel = app.query_one(f"#{tab}-panel")
        if row is not None:
            table = panel.query_one(DataTable)
            table.move_cursor(row=row, animate=False)
            table.action_select_cursor()
            await settle(pilot)
        if action is not None:
            await panel.run_action(action)
            await settle(pilot)

    return step


async def ready(pilot: Pilot) -> None:
    """Wait for the first readings, then give the sparklines a fixed history."""
    app = pilot.app
    assert isinstance(app, DashboardApp)
    await eventually(
        lambda: bool(app.state.snapshot and app.state.tier and app.state.drift),
        5,
        "the dashboard's first readings (snapshot, tier, drift)",
        interval=0.01,
    )
    app.state.history = History()
    for step in range(40):
        app.state.history.add(counters(step))
    app._render()
    await settle(pilot)


async def compose_broadcast(pilot: Pilot) -> None:
    await show("broadcast")(pilot)
    pilot.app.query_one("#message", Input).value = "Restart in 5 minutes"
    pilot.app.query_one(BroadcastPanel).preview()
    await settle(pilot)


async def help_screen(pilot: Pilot) -> None:
    await pilot.app.run_action("help")
    await settle(pilot)


SCREENS: dict[str, Step] = {
    "overview": show("overview"),
    "workers": show("workers", row=0),
    "locations": show("locations", row=0),
    "sessions": show("sessions", row=1),
    "locks": show("locks", row=0),
    "broadcast": compose_broadcast,
    "live": show("live"),
    "flags": show("flags"),
    "audit": show("audit", row=0),
    "help": help_screen,
}


async def latency_modal(pilot: Pilot) -> None:
    await pilot.press("l")
    await settle(pilot)


MODALS: dict[str, Step] = {
    "latency_modal": latency_modal,
    "kick_modal": show("sessions", action="kick"),
    "force_release_modal": show("locks", row=1, action="force"),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, screen: str, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await SCREENS[screen](pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("modal", list(MODALS))
def test_modal(snap_compare, modal: str) -> None:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await MODALS[modal](pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_read_only_locks(snap_compare) -> None:
    """--read-only: the header says so and the footer offers no write."""

    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await show("locks")(pilot)

    assert snap_compare(make_app(read_only=True), terminal_size=(80, 24), run_before=run_before)


def test_flags_without_postgres(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await show("flags")(pilot)

    assert snap_compare(make_app(postgres=False), terminal_size=(80, 24), run_before=run_before)
