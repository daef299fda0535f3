"""What made a key wait on a loaded dashboard (issue #16 item 5, docs/benchmarks/dashboard.md): the
Overview's sparklines drawn cell by cell, the widget style computed anew for every line of
a table or log, the Locations table filled under the operator's keys on its first showing.
Pure UI logic: the fixed dataset of ``tests/tui_fake.py``, no server."""

from __future__ import annotations

import random
from typing import Any

from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from textual.dom import DOMNode
from textual.geometry import Region
from textual.renderables.sparkline import Sparkline as TextualSparkline
from textual.widgets import DataTable, RichLog

from echoes_ops.tui.panels.locations import LocationsPanel
from echoes_ops.tui.panels.sessions import SessionsPanel
from echoes_ops.tui.panels.spark import LEVELS, Spark, spark_lines
from echoes_ops.tui.panels.styleonce import DashTable, fast_cell
from echoes_ops.tui.panels.workers import WorkersPanel
from tests.test_tui_repaint import make_app
from tests.test_tui_snapshots import ready, settle
from tests.tui_fake import LOCATIONS

LOW, HIGH = Color.parse("#203040"), Color.parse("#80a0ff")


def _textual_plain(data: list[float], width: int, height: int) -> str:
    console = Console(width=width, color_system=None)
    with console.capture() as captured:
        console.print(TextualSparkline(data, width=width, height=height), end="")
    return captured.get()


def test_spark_draws_the_bars_of_textuals_sparkline() -> None:
    rng = random.Random(16)
    for width, height, n in [(40, 1, 7), (80, 3, 80), (158, 8, 120), (30, 2, 200), (12, 4, 1)]:
        data = [float(rng.randint(0, 5000)) for _ in range(n)]
        text = spark_lines(data, width, height, LOW, HIGH)
        assert text.plain == _textual_plain(data, width, height), (width, height, n)


def test_spark_merges_runs_and_uses_a_few_styles() -> None:
    data = [1.0, 50.0, 20.0]  # three readings over 150 columns: three runs a line
    text = spark_lines(data, 150, 8, LOW, HIGH)
    assert len(text.plain.splitlines()) == 8
    assert all(len(line) == 150 for line in text.plain.splitlines())
    assert len(text.spans) <= 3 * 8
    many = spark_lines([float(i * 37 % 101) for i in range(120)], 158, 8, LOW, HIGH)
    assert len({span.style for span in many.spans}) <= LEVELS
    assert spark_lines([], 10, 2, LOW, HIGH).plain == " " * 10 + "\n" + "▁" * 10


async def test_the_overview_sparklines_cost_runs_not_cells() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        ops = app.query_one("#ops")
        assert isinstance(ops, Spark)
        ops.data = [float(i % 7) for i in range(40)]  # 40 readings over 156 columns
        await settle(pilot)
        strips = ops.render_lines(Region(0, 0, ops.size.width, ops.size.height))
        segments = sum(len(list(strip)) for strip in strips)
        # Textual's Sparkline: a segment per cell (156 x 8 = 1,248)
        assert ops.size.width * ops.size.height > 1000
        assert segments < 40 * ops.size.height + 50


async def test_a_table_repaint_computes_its_style_once(monkeypatch: Any) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        app.action_show_tab("locations")
        await settle(pilot)
        table = app.query_one(LocationsPanel).query_one(DataTable)
        log = app.query_one(RichLog)
        assert table.styles.height is not None  # DataTable's own CSS still applies
        assert table.styles.height.value == 1  # TablePanel's 1fr
        walks: list[DOMNode] = []
        style = DOMNode.rich_style

        def counted(node: DOMNode) -> Any:
            walks.append(node)
            return style.fget(node)  # type: ignore[attr-defined]

        monkeypatch.setattr(DOMNode, "rich_style", property(counted))
        lines = table.size.height
        assert lines > 20
        strips = table.render_lines(Region(0, 0, table.size.width, lines))
        assert len(strips) == lines
        assert walks.count(table) == 1  # Textual's DataTable: once per line
        walks.clear()
        log.render_lines(Region(0, 0, 40, 10))
        assert walks.count(log) == 1
        assert all(isinstance(s, Segment) for s in list(strips[1]))


async def test_the_locations_and_workers_tables_are_filled_before_they_are_first_shown() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        assert app.tabs.active == "overview"
        snap = app.state.snapshot
        assert snap is not None
        wanted = {"locations": len(LOCATIONS), "workers": len(snap.workers)}
        assert wanted["workers"] > 1
        panels = {
            "locations": app.query_one(LocationsPanel),
            "workers": app.query_one(WorkersPanel),
        }
        for _ in range(50):  # a fill runs a chunk per turn of the event loop
            if all(panels[tab].table.row_count == n for tab, n in wanted.items()):
                break
            await pilot.pause()
        for tab, panel in panels.items():  # never shown, already filled
            assert panel.table.row_count == wanted[tab], tab
            keys = [row.key.value for row in panel.table.ordered_rows]
            app.action_show_tab(tab)
            await settle(pilot)
            assert [row.key.value for row in panel.table.ordered_rows] == keys
        assert app.query_one(SessionsPanel).table.row_count == 0  # not a prefilled tab


def _cells(lines: list[list[Segment]]) -> list[tuple[str, Any]]:
    """Each character of each line with its style: equal when two renderings draw the same,
    however their segments are cut."""
    return [(char, seg.style) for line in lines for seg in line for char in seg.text]


async def test_the_short_cell_path_draws_what_textual_draws() -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        app.action_show_tab("locations")
        await settle(pilot)
        table = app.query_one(LocationsPanel).query_one(DashTable)
        key = table.add_row(
            "[b]not markup?[/b]", Text("wide 名前 and more text", style="bold red"), "x" * 80, ""
        )
        spans = Text("base ", style="green")
        spans.append("span", style="bold")
        other = table.add_row("ab" + " " * 40, spans, "名前名前名前", Text(""))
        await settle(pilot)
        base = table.rich_style
        checked = 0
        for row in (0, 1, 2, table.get_row_index(key), table.get_row_index(other)):
            for column in range(len(table.columns)):
                width = table.ordered_columns[column].get_render_width(table)
                for cursor, hover in ((False, False), (True, False), (False, True)):
                    for narrow in (width, 5, 3):
                        fast = fast_cell(table, row, column, base, narrow, cursor, hover)
                        assert fast is not None
                        table._cell_render_cache.clear()
                        slow = DataTable._render_cell(
                            table, row, column, base, narrow, cursor, hover
                        )
                        table._cell_render_cache.clear()
                        assert _cells(fast) == _cells(slow), (row, column, narrow, cursor)
                        checked += 1
        assert checked == 5 * 4 * 3 * 3
        assert fast_cell(table, -1, 0, base, 10, False, False) is None  # the header: Textual's


async def test_a_tab_switch_landing_as_the_app_closes_is_ignored() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
    assert not app.screen_stack
    app._focus_panel()  # a TabActivated handled after the screens are gone: no error
