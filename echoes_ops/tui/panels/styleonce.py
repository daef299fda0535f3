"""The dashboard's table and log: Textual's, with the widget's style computed once per repaint.

``DataTable.render_line`` and ``RichLog.render_line`` ask for ``self.rich_style`` for every
line they draw, and Textual computes it anew each time by walking the widget's ancestors
and combining their CSS. A full repaint of a 44-line log or table (a tab switch, the live
tail scrolling, a first fill) spent most of its time there: ~85% of ``RichLog.render_line``
in a profile of the Live tab. Within one ``render_lines`` pass the styles cannot change, so
:class:`StyleOnce` computes it once at the start of the pass and answers every line from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable, RichLog

if TYPE_CHECKING:
    _Mixin = Widget
else:  # a plain mixin: Textual takes a widget's CSS type names and default CSS from its
    _Mixin = object  # first base that is a widget, which must stay DataTable / RichLog


class StyleOnce(_Mixin):
    """Mixed in before a widget class: ``rich_style`` is computed once per repaint pass."""

    _style_once: Style | None = None

    @property
    def rich_style(self) -> Style:
        once = self._style_once
        return once if once is not None else super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style_once = None  # never a style from an earlier pass
        self._style_once = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._style_once = None


class DashTable(StyleOnce, DataTable[RenderableType]):
    """The panels' ``DataTable``, with a short path for the common cell (:func:`fast_cell`)."""

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        cell = fast_cell(self, row_index, column_index, base_style, width, cursor, hover)
        if cell is not None:
            return cell
        return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)


class DashLog(StyleOnce, RichLog):
    """The live tail's ``RichLog``."""


def _plain_line(cell: object) -> Text | None:
    """``cell`` when it is one line of text that renders as its characters cropped at the
    width (no newline, tab, ellipsis or justification), else None."""
    if not isinstance(cell, Text):
        return None
    plain = cell.plain
    if "\n" in plain or "\t" in plain:
        return None
    if cell.overflow not in (None, "fold", "crop") or cell.justify not in (None, "default"):
        return None
    return cell


def fast_cell(
    table: DataTable[Any],
    row_index: int,
    column_index: int,
    base_style: Style,
    width: int,
    cursor: bool,
    hover: bool,
) -> list[list[Segment]] | None:
    """A body cell of a one-line row holding one line of text, rendered as Textual's
    ``DataTable._render_cell`` renders it (same cache, same key, same segments: the text
    cropped or padded to the column, ``cell_padding`` spaces each side, the row's base and
    component styles under it and the post style over it) without a Rich render pipeline per
    cell (a padding, a styled wrapper, a line split and crop: ~450 us a cell against ~70 us,
    so ~150 ms for a 40-row page of 9 columns on a loaded machine). None: not such a cell, the
    caller renders it the general way. Written against Textual 8.2.8 (pinned by the lock;
    tests/test_tui_keycost.py compares both renderings cell by cell)."""
    if row_index < 0 or column_index < 0:
        return None
    row_key = table._row_locations.get_key(row_index)
    if row_key is None:
        return None
    row = table.rows.get(row_key)
    if row is None or row.height != 1 or row.auto_height:
        return None
    column_key = table._column_locations.get_key(column_index)
    if column_key is None:
        return None
    cache_key = (
        row_key,
        column_key,
        base_style,
        cursor,
        hover,
        table._show_hover_cursor,
        table._update_count,
        table._pseudo_class_state,
    )
    cache = table._cell_render_cache
    if cache_key in cache:
        lines: list[list[Segment]] = cache[cache_key]
        return lines
    _, cells = table._get_row_renderables(row_index)
    if column_index >= len(cells):
        return None
    text = _plain_line(cells[column_index])
    padding = table.cell_padding
    inner = width - 2 * padding
    if text is None or inner <= 0:
        return None
    fixed = row_index < table.fixed_rows or column_index < table.fixed_columns
    component, post = table._get_styles_to_render_cell(
        False,
        False,
        fixed,
        hover,
        cursor,
        table.show_cursor,
        table._show_hover_cursor,
        table.cursor_foreground_priority == "css",
        table.cursor_background_priority == "css",
    )
    console = table.app.console
    null = Style.null()
    if text.spans:  # the text's own style and its spans, as Text.__rich_console__ draws them
        segments = list(text.render(console))
    else:
        style = console.get_style(text.style) if text.style else None
        segments = [Segment(text.plain, style)]
    body = Segment.adjust_line_length(segments, inner, null)  # cropped, or padded
    pad = [Segment(" " * padding, null)] if padding else []
    pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component
    line = list(Segment.apply_style([*pad, *body, *pad], style=pre, post_style=post))
    lines = [line]
    cache[cache_key] = lines
    return lines
