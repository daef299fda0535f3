"""What a refresh and a key press cost the screen: a refresh repaints what changed without
a layout of the whole screen, and the key bar follows the bindings without rebuilding
itself (docs/benchmarks/dashboard.md, the dashboard's key-to-repaint figures). Pure UI logic: the
fixed dataset of ``tests/tui_fake.py``, no server."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.style import Style
from textual.pilot import Pilot
from textual.widgets import RichLog

from echoes_ops.config import Settings
from echoes_ops.operations.tail import to_message
from echoes_ops.tui.app import TABS, DashboardApp, create_app
from echoes_ops.tui.modals import HelpScreen
from echoes_ops.tui.panels import live
from echoes_ops.tui.panels.keybar import KeyBar, KeyItem, render_keys
from echoes_ops.tui.panels.live import LivePanel
from tests.test_tui_snapshots import ready, settle
from tests.tui_fake import NOW, FakeSource


def make_app() -> DashboardApp:
    app = create_app(
        Settings.from_dsn("redis://redis.example:6379/0"),
        refresh=3600,
        source=FakeSource(),
        tier_every=3600,
        drift_every=3600,
    )
    app.animation_level = "none"
    return app


class Counts:
    """Layouts of the screen and frames written, counted from now on."""

    def __init__(self, app: DashboardApp) -> None:
        self.layouts = 0
        self.frames = 0
        screen: Any = app.screen
        layout, display = screen._refresh_layout, app._display

        def counted_layout(*args: Any, **kwargs: Any) -> None:
            self.layouts += 1
            layout(*args, **kwargs)

        def counted_display(*args: Any, **kwargs: Any) -> None:
            self.frames += 1
            display(*args, **kwargs)

        screen._refresh_layout = counted_layout
        app._display = counted_display  # type: ignore[method-assign]


def bar_text(app: DashboardApp) -> str:
    return app.query_one(KeyBar).render().plain


async def newer_snapshot(pilot: Pilot, app: DashboardApp, seconds: float) -> None:
    """A refresh as the poll delivers it: the same tier, read ``seconds`` later."""
    snap = app.state.snapshot
    assert snap is not None
    app.state.snapshot = dataclasses.replace(snap, taken_at=snap.taken_at + seconds)
    app._render()
    await settle(pilot)


async def test_a_refresh_repaints_without_a_layout_of_the_screen() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        for tab in ("overview", "sessions", "live"):
            app.action_show_tab(tab)
            await settle(pilot)
            counts = Counts(app)
            await newer_snapshot(pilot, app, 5)
            assert "updated 08:00:05" in app.header.render().plain  # type: ignore[attr-defined]
            assert counts.frames >= 1, tab  # the new header was drawn
            assert counts.layouts == 0, tab  # the header, hints and overview kept their size
            await newer_snapshot(pilot, app, -5)


async def test_the_key_bar_follows_the_tab_without_rebuilding_itself() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        bar = app.query_one(KeyBar)
        assert "Quit" in bar_text(app)
        assert "Kick" not in bar_text(app)
        for tab, wanted in (("sessions", "Kick"), ("live", "Pause"), ("locks", "Hold")):
            await pilot.press(str([t for t, _ in TABS].index(tab) + 1))
            await settle(pilot)
            assert app.tabs.active == tab
            assert wanted in bar_text(app), (tab, bar_text(app))
            assert app.query_one(KeyBar) is bar
            assert not bar.children
        assert bar_text(app).rstrip().endswith("^p palette")


async def test_a_click_on_the_key_bar_presses_the_key() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        bar = app.query_one(KeyBar)
        start, _end, item = next(span for span in bar.spans if span[2].description == "Help")
        await pilot.click(KeyBar, offset=(start + 1, 0))
        await settle(pilot)
        assert item.key == "question_mark"
        assert isinstance(app.screen, HelpScreen)


def test_render_keys_shows_each_key_once_disabled_dimmed_palette_at_the_edge() -> None:
    items = (KeyItem("q", "q", "Quit", True), KeyItem("k", "k", "Kick", False))
    palette = KeyItem("ctrl+p", "^p", "palette", True)
    key, description = Style(bold=True), Style(italic=True)
    text, spans = render_keys(items, palette, 40, key, description, Style())
    assert text.plain == " q Quit  k Kick " + " " * 12 + "▏^p palette "
    assert text.cell_len == 40
    assert [(s, e, i.key) for s, e, i in spans] == [(0, 8, "q"), (8, 16, "k"), (29, 39, "ctrl+p")]
    assert any(span.style == key + Style(dim=True) for span in text.spans)  # k is disabled
    narrow, _ = render_keys(items, palette, 20, key, description, Style())
    assert "palette" not in narrow.plain  # no room: the palette key is left out, not wrapped


async def test_a_live_redraw_builds_only_the_lines_it_draws(monkeypatch: Any) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        panel = app.query_one(LivePanel)
        body = {"type": "location_update", "location_id": "ruins", "payload": {"type": "x"}}
        events = [
            to_message("location:ruins", json.dumps(body), received_at=NOW + i)
            for i in range(live.KEEP)
        ]
        panel.add_events(events)  # the tab is hidden: kept, not drawn
        built: list[object] = []
        line = live.tail_line

        def counted(event: Any) -> Any:
            built.append(event)
            return line(event)

        monkeypatch.setattr(live, "tail_line", counted)
        app.action_show_tab("live")  # shown again: the newest that fill the log are drawn
        await settle(pilot)
        log = panel.query_one(RichLog)
        shown = log.scrollable_content_region.height
        assert 20 < shown < len(built) <= 48 + 5 < live.REDRAW  # not the 100 of before
        assert built == events[-len(built) :]
        assert len(log.lines) >= shown  # the log is full
