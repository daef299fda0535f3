"""A sparkline that costs a few hundred segments, not one styled cell per column.

Textual's ``Sparkline`` draws every cell of its area as a segment with a colour of its own
(a blend between two colours by the column's height): at 158x8, two of them on the
Overview made ~2,500 segments and as many new styles per repaint, 30-50 ms of the screen's
CPU each time the Overview was drawn (every refresh, every tab switch to it, and behind the
help modal). :func:`spark_lines` draws the same bars with the colour quantized to
``LEVELS`` steps and runs of equal cells merged into one segment; :class:`Spark` is the
widget (``data`` as Textual's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Span, Text
from textual.app import RenderResult
from textual.color import Color
from textual.reactive import reactive
from textual.widget import Widget

BARS: Final = "▁▂▃▄▅▆▇█"
LEVELS: Final = 8  # colour steps between the low and the high colour


def columns(data: Sequence[float], width: int) -> list[float]:
    """One value per column: the largest of each column's share of ``data`` (a reading is
    repeated over several columns when there are fewer readings than columns)."""
    n = len(data)
    if n == 0 or width <= 0:
        return []
    if n >= width:
        return [max(data[n * c // width : n * (c + 1) // width]) for c in range(width)]
    step, at, out = n / width, 0.0, []  # Textual's own stepping, float rounding included
    for _ in range(width):
        out.append(data[int(at)])
        at += step
    return out


def spark_lines(
    data: Sequence[float], width: int, height: int, low: RichColor, high: RichColor
) -> Text:
    """``height`` lines of ``width`` cells: a bar per column, scaled from the smallest to
    the largest value, coloured from ``low`` to ``high`` by its height."""
    height = max(1, height)
    if width <= 0:
        return Text()
    palette = [Style(color=_blend(low, high, level / (LEVELS - 1))) for level in range(LEVELS)]
    values = columns(data, width)
    text = Text(no_wrap=True, overflow="crop", end="")
    if not values:
        for _ in range(height - 1):
            text.append(" " * width + "\n")
        text.append("▁" * width, palette[0])
        return text
    if len(data) == 1:  # as Textual: one reading fills the area
        return Text("\n".join(["█" * width] * height), style=palette[-1], end="")
    lowest, highest = min(data), max(data)
    extent = highest - lowest or 1
    steps = len(BARS) * height - 1
    # neighbouring columns of the same value (a reading spread over several) form one run
    runs: list[tuple[int, Style, int]] = []  # (bar top, colour, columns)
    for value in values:
        ratio = (value - lowest) / extent
        top, shade = int(ratio * steps), palette[round(ratio * (LEVELS - 1))]
        if runs and runs[-1][0] == top:
            runs[-1] = (top, shade, runs[-1][2] + 1)
        else:
            runs.append((top, shade, 1))
    lines: list[str] = []
    spans: list[Span] = []
    offset = 0
    for row in reversed(range(height)):
        floor, ceiling = row * len(BARS), (row + 1) * len(BARS)
        parts: list[str] = []
        for top, shade, count in runs:
            if top < floor:
                parts.append(" " * count)
            else:
                cell = "█" if top >= ceiling else BARS[top % len(BARS)]
                spans.append(Span(offset, offset + count, shade))
                parts.append(cell * count)
            offset += count
        lines.append("".join(parts))
        offset += 1  # the newline
    return Text("\n".join(lines), spans=spans, no_wrap=True, overflow="crop", end="")


def _blend(low: RichColor, high: RichColor, ratio: float) -> RichColor:
    a, b = low.get_truecolor(), high.get_truecolor()
    return RichColor.from_rgb(
        a.red + (b.red - a.red) * ratio,
        a.green + (b.green - a.green) * ratio,
        a.blue + (b.blue - a.blue) * ratio,
    )


class Spark(Widget):
    """A sparkline widget: bars over ``data``, the colours of Textual's ``Sparkline``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"spark--max-color", "spark--min-color"}
    DEFAULT_CSS = """
    Spark { height: 1; }
    Spark > .spark--max-color { color: $primary; }
    Spark > .spark--min-color { color: $primary 30%; }
    """

    data: reactive[Sequence[float]] = reactive[Sequence[float]](list)

    def render(self) -> RenderResult:
        _, base = self.background_colors
        low: Color = base + self.get_component_styles("spark--min-color").color
        high: Color = base + self.get_component_styles("spark--max-color").color
        return spark_lines(
            self.data, self.size.width, self.size.height, low.rich_color, high.rich_color
        )
