"""A table of rows with a detail pane below: the shape of most panels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from echoes_ops.fmt import clock_time
from echoes_ops.tui.messages import Loaded, LoadFailed
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.styleonce import DashTable
from echoes_ops.tui.panels.tablesync import Filler, Row, patch
from echoes_ops.tui.source import Source

__all__ = ["Row", "TablePanel", "error_text"]


def error_text(message: str) -> Text:
    return Text(message, style="bold red")


class TablePanel(Vertical):
    """Subclasses set ``COLUMNS`` and implement :meth:`drill` (Enter on a row) and
    :meth:`render_detail` (a :class:`Loaded` value to show)."""

    COLUMNS: tuple[str, ...] = ()
    PREFILL: ClassVar[bool] = False  # filled from the first data while its tab is hidden
    DEFAULT_CSS = """
    TablePanel > DataTable { height: 1fr; min-height: 5; }
    TablePanel > .detail-box { height: 1fr; border-top: solid $primary-background; }
    TablePanel > .hint { height: 1; color: $text-muted; }
    """

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.selected: str | None = None
        self._rows: list[Row] = []  # what the table shows
        self._target: list[Row] = []  # what it was last asked to show
        self._columns: list[ColumnKey] = []
        self._filler = Filler(self.call_after_refresh)
        self._fill_cursor: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="hint")
        table = DashTable(cursor_type="row", zebra_stripes=True)
        yield table
        with VerticalScroll(classes="detail-box"):
            yield Static("", classes="detail")

    def on_mount(self) -> None:
        self._columns = self.table.add_columns(*self.COLUMNS)

    @property
    def table(self) -> DataTable[RenderableType]:
        table: DataTable[RenderableType] = self.query_one(DataTable)
        return table

    def show_state(self, state: DashboardState) -> None:
        """Show the rows ``state`` holds (the panels that follow the polls)."""

    def prefill(self, state: DashboardState) -> None:
        """For a ``PREFILL`` panel, while hidden: fill the table once from the first data (50
        rows per turn of the event loop, none of them drawn), so its first showing patches a
        full table (a few ms) instead of adding and measuring its rows under the operator's
        keys, a repaint per chunk. Later refreshes wait until the tab is shown."""
        if self.PREFILL and not self._target and self.is_mounted and self.children:
            self.show_state(state)

    def set_hint(self, text: str) -> None:
        self.query_one(".hint", Static).update(text, layout=False)  # one line: no layout

    def set_detail(self, renderable: RenderableType) -> None:
        self.query_one(".detail", Static).update(renderable)

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Show ``rows``, keeping the cursor on the same key when it is still there. Only
        what changed is applied (:func:`tablesync.patch`); a refill of a big table is
        spread over several turns of the event loop."""
        new = list(rows)
        if new == self._target:
            return
        self._target = new
        table = self.table
        filler = self._filler
        current = self._fill_cursor if filler.filling else self._cursor_at()
        if not filler.filling and patch(table, self._columns, self._rows, new):
            self._rows = new
            self._restore_cursor(current)
            return
        self._fill_cursor = current

        def filled() -> None:
            self._rows = new
            self._restore_cursor(current)

        filler.fill(table, new, filled)

    def _cursor_at(self) -> str | None:
        table = self.table
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            key: str | None = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            return key
        return None

    def _restore_cursor(self, key: str | None) -> None:
        if key is None:
            return
        for index, (row_key, _) in enumerate(self._rows):
            if row_key == key:
                if self.table.cursor_row != index:
                    self.table.move_cursor(row=index, animate=False)
                return

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key is not None:
            self.selected = key
            self.set_detail(Text("loading…", style="dim"))
            self.drill(key)

    def cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def drill(self, key: str) -> None:
        """Start loading the detail of ``key``."""

    def render_detail(self, value: object) -> RenderableType:
        return Text(str(value))

    def on_loaded(self, message: Loaded) -> None:
        if message.key.startswith("detail"):
            message.stop()
            # a detail is read once: say when, so an old one is never taken for live data
            read = Text(f"read at {clock_time(self.source.clock())}; Enter reads it again")
            read.stylize("dim")
            self.set_detail(Group(read, self.render_detail(message.value)))

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key.startswith("detail"):
            message.stop()
            self.set_detail(error_text(str(message.error)))
