"""Human output that survives pipes: tables and lines on a terminal, one row per line when
stdout is not one (or with ``--plain`` / ``ECHOES_OPS_PLAIN=1``).

On a terminal, rich draws tables with borders and fits them to the window. Anywhere else
(a pipe, a file, ``watch``, a CI log) a table is printed as a header line and one line per
row, columns aligned with two spaces, never wrapped, never truncated, without colour: the
first line is the table's title when it has one. ``sessions list | wc -l`` is then the
number of sessions plus two.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

PLAIN_ENV = "ECHOES_OPS_PLAIN"
WIDE = 10_000  # a line width no row reaches: the console never wraps in plain mode


def plain() -> bool:
    """Plain output: stdout is not a terminal, ``--plain`` was given or ECHOES_OPS_PLAIN set."""
    if "typer" in sys.modules:  # under Typer: its --plain option (a plain run has none)
        from typer._click.globals import get_current_context

        ctx = get_current_context(silent=True)
        if ctx is not None and ctx.find_root().params.get("plain"):
            return True
    if os.environ.get(PLAIN_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return True
    return not sys.stdout.isatty()


def console() -> Console:
    """The stdout console: never wraps, styles nothing, in plain mode."""
    from rich.console import Console

    if plain():
        return Console(
            highlight=False, width=WIDE, soft_wrap=True, no_color=True, color_system=None
        )
    return Console(highlight=False)


def _cell(value: object) -> str:
    from rich.text import Text

    if isinstance(value, Text):
        return value.plain
    return str(value)


def plain_lines(table: Table) -> list[str]:
    """The table as text lines: title, header (when shown), one line per row."""
    columns = table.columns
    rows = [[_cell(c).replace("\n", " ") for c in column.cells] for column in columns]
    height = max((len(cells) for cells in rows), default=0)
    grid = [
        [rows[i][r] if r < len(rows[i]) else "" for i in range(len(columns))] for r in range(height)
    ]
    if table.show_header:
        grid.insert(0, [_cell(column.header) for column in columns])
    widths = [max((len(line[i]) for line in grid), default=0) for i in range(len(columns))]
    out = []
    if table.title:
        out.append(_cell(table.title))
    for line in grid:
        cells = []
        for i, text in enumerate(line):
            right = columns[i].justify == "right"
            cells.append(text.rjust(widths[i]) if right else text.ljust(widths[i]))
        out.append("  ".join(cells).rstrip())
    return out


def print_table(table: Table, on: Console | None = None) -> None:
    """A rich table on a terminal (on ``on``, else stdout); :func:`plain_lines` anywhere else."""
    if plain():
        sys.stdout.write("".join(line + "\n" for line in plain_lines(table)))
    else:
        (on or console()).print(table)
