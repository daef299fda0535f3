"""Bringing a DataTable to a new list of rows at the cost of what changed.

A refresh of the Locations tab (500 rows, counts and order changing as players move) used to
clear and refill the table: every cell measured again, 40-60 ms of the screen's loop each
refresh. :func:`patch` applies the difference instead (changed cells, removed and added
rows, then one reorder) and says when it cannot, so the caller refills; :class:`Filler`
refills a big table a chunk per turn of the event loop, so a first fill never holds the
screen for long either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

Row = tuple[str, Sequence[RenderableType]]  # (row key, cells)
PATCH_LIMIT: Final = 50  # rows added or removed beyond which a refill is cheaper
CHUNK: Final = 50  # rows added per turn of the event loop when filling


def _width(cell: RenderableType) -> int | None:
    if isinstance(cell, Text):
        return cell.cell_len
    if isinstance(cell, str):
        return cell_len(cell)
    return None


def _widens(table: DataTable[Any], column: ColumnKey, cell: RenderableType) -> bool:
    """Whether the table must measure ``cell`` (it may widen its column). Asking it to
    measure a cell narrower than its column makes it measure the whole column."""
    width = _width(cell)
    return width is None or width > table.columns[column].content_width


def patch(
    table: DataTable[Any], columns: Sequence[ColumnKey], old: list[Row], new: list[Row]
) -> bool:
    """Turn ``table`` (showing ``old``) into ``new``; False (table untouched) when a refill
    fits better: duplicate keys, a row of another width, many rows in or out, or a reorder
    of rows whose first cell is not their key (the reorder sorts on it)."""
    if not old or not columns:
        return False
    before = dict(old)
    wanted = dict(new)
    if len(wanted) != len(new) or any(len(cells) != len(columns) for _, cells in new):
        return False
    gone = [key for key, _ in old if key not in wanted]
    added = [(key, cells) for key, cells in new if key not in before]
    if len(gone) + len(added) > PATCH_LIMIT:
        return False
    order = [key for key, _ in new]
    after = [key for key, _ in old if key in wanted] + [key for key, _ in added]
    if after != order and any(str(cells[0]) != key for key, cells in new):
        return False
    for key in gone:
        table.remove_row(key)
    for key, cells in new:
        previous = before.get(key)
        if previous is None:
            continue
        for column, was, cell in zip(columns, previous, cells, strict=True):
            if was != cell:
                table.update_cell(key, column, cell, update_width=_widens(table, column, cell))
    for key, cells in added:
        table.add_row(*cells, key=key)
    if after != order:
        position = {key: index for index, key in enumerate(order)}
        table.sort(columns[0], key=lambda cell: position.get(str(cell), len(position)))
    return True


class Filler:
    """Refills a table: the first ``CHUNK`` rows at once, the rest a chunk per turn of the
    event loop (``later`` schedules a callback). A newer fill cancels an unfinished one."""

    def __init__(self, later: Callable[[Callable[[], None]], object]) -> None:
        self.later = later
        self.generation = 0
        self.filling = False

    def fill(self, table: DataTable[Any], rows: list[Row], done: Callable[[], None]) -> None:
        self.generation += 1
        generation = self.generation
        table.clear()
        self.filling = True

        def step(start: int) -> None:
            if generation != self.generation:
                return  # a newer fill took over
            for key, cells in rows[start : start + CHUNK]:
                table.add_row(*cells, key=key)
            if start + CHUNK < len(rows):
                self.later(lambda: step(start + CHUNK))
            else:
                self.filling = False
                done()

        step(0)
