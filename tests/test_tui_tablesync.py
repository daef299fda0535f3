"""Table updates in place (tui/panels/tablesync.py): whatever the change, the table ends up
showing exactly the new rows in order, and the cursor stays on its key."""

from __future__ import annotations

import random

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from echoes_ops.tui.panels.base import TablePanel
from echoes_ops.tui.panels.tablesync import CHUNK, Row, patch
from tests.tui_fake import FakeSource


class Panel(TablePanel):
    COLUMNS = ("id", "players", "bar")


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield Panel(FakeSource(), id="panel")  # type: ignore[arg-type]


def shown(table: DataTable[object]) -> list[tuple[str, list[str]]]:
    return [
        (str(row.key.value), [str(cell) for cell in table.get_row(row.key)])
        for row in table.ordered_rows
    ]


def as_text(rows: list[Row]) -> list[tuple[str, list[str]]]:
    return [(key, [str(cell) for cell in cells]) for key, cells in rows]


def rows_of(counts: dict[str, int]) -> list[Row]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(k, (k, f"{n:,}", Text("█" * (n // 10), style="cyan"))) for k, n in ordered]


async def test_random_changes_end_in_the_new_rows() -> None:
    rng = random.Random(5)
    app = Host()
    async with app.run_test() as pilot:
        panel = app.query_one(Panel)
        counts = {f"loc_{i:03d}": rng.randrange(100) for i in range(60)}
        panel.set_rows(rows_of(counts))
        await pilot.pause()
        refills = []
        fill = panel._filler.fill
        panel._filler.fill = lambda *args: (refills.append(1), fill(*args))  # type: ignore[method-assign]
        for _ in range(40):
            for _ in range(rng.randrange(1, 20)):  # players move
                counts[rng.choice(list(counts))] += rng.randrange(-5, 60)
            if rng.random() < 0.3:  # a location appears, another is gone
                counts[f"new_{rng.randrange(1000)}"] = rng.randrange(100)
                counts.pop(rng.choice(list(counts)))
            table = panel.table
            key = rng.choice(list(counts))
            panel.set_rows(rows_of(counts))
            await pilot.pause()
            assert shown(table) == as_text(rows_of(counts))
            # the cursor follows its key
            table.move_cursor(row=[k for k, _ in rows_of(counts)].index(key))
            for loc in list(counts)[:3]:
                counts[loc] += 7
            panel.set_rows(rows_of(counts))
            await pilot.pause()
            assert panel.cursor_key() == key
        assert refills == []  # every change was applied in place, none refilled


async def test_when_patching_does_not_fit() -> None:
    app = Host()
    async with app.run_test() as pilot:
        table = app.query_one(Panel).table
        columns = app.query_one(Panel)._columns
        old: list[Row] = [("a", ("a", "1", "")), ("b", ("b", "2", ""))]
        for key, cells in old:
            table.add_row(*cells, key=key)
        await pilot.pause()
        many = [(str(i), (str(i), "1", "")) for i in range(60)]
        assert not patch(table, columns, old, many)  # many rows in: refill
        assert not patch(table, columns, old, [("a", ("a", "1"))])  # another width
        assert not patch(table, columns, old, [("a", ("a", "1", "")), ("a", ("a", "2", ""))])
        # a reorder of rows whose first cell is not their key
        assert not patch(table, columns, old, [("b", ("x", "2", "")), ("a", ("a", "1", ""))])
        assert shown(table) == as_text(old)  # untouched by refusals
        assert patch(table, columns, old, [("b", ("b", "3", "")), ("a", ("a", "1", ""))])
        await pilot.pause()
        assert shown(table) == [("b", ["b", "3", ""]), ("a", ["a", "1", ""])]


async def test_a_big_refill_is_spread_over_turns_and_keeps_the_cursor() -> None:
    app = Host()
    async with app.run_test() as pilot:
        panel = app.query_one(Panel)
        first = rows_of({f"p{i}": i for i in range(3 * CHUNK + 10)})
        panel.set_rows(first)
        assert panel.table.row_count == CHUNK  # the rest comes over the next turns
        await pilot.pause()
        for _ in range(20):
            if panel.table.row_count == len(first):
                break
            await pilot.pause()
        assert shown(panel.table) == as_text(first)
        key = first[150][0]
        panel.table.move_cursor(row=150)
        second = rows_of({f"q{i}": i for i in range(60)} | {key: 10_000})  # most rows new
        panel.set_rows(second)
        for _ in range(20):
            await pilot.pause()
        assert shown(panel.table) == as_text(second)
        assert panel.cursor_key() == key
