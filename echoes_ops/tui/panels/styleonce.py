"""The dashboard's table and log: Textual's, with the widget's style computed once per repaint.

``DataTable.render_line`` and ``RichLog.render_line`` ask for ``self.rich_style`` for every
line they draw, and Textual computes it anew each time by walking the widget's ancestors
and combining their CSS. A full repaint of a 44-line log or table (a tab switch, the live
tail scrolling, a first fill) spent most of its time there: ~85% of ``RichLog.render_line``
in a profile of the Live tab. Within one ``render_lines`` pass the styles cannot change, so
:class:`StyleOnce` computes it once at the start of the pass and answers every line from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.style import Style
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
    """The panels' ``DataTable``."""


class DashLog(StyleOnce, RichLog):
    """The live tail's ``RichLog``."""
