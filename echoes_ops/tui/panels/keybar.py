"""The key bar at the bottom of the screen: the keys that act here, as one line of text.

Textual's ``Footer`` rebuilds itself (one widget per key, each styled by the CSS engine, then
a layout of the whole screen) whenever the bindings change, which is every tab switch and
every focus change: 20-65 ms of the screen's CPU per key press at 160x48, and a full layout
on top (docs/benchmarks/dashboard.md). This bar looks the same but is one widget whose
:func:`render_keys` builds one line; a change of bindings only repaints it, and only when
what it shows changed. A click on a key presses it, as on the footer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import ActiveBinding, Binding
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class KeyItem:
    key: str  # the binding's key, pressed on a click
    display: str  # how the key is shown
    description: str
    enabled: bool


def key_items(
    bindings: Iterable[ActiveBinding], display: Callable[[Binding], str]
) -> tuple[KeyItem, ...]:
    """The shown bindings, one per action (the first key bound to it), in binding order."""
    seen: set[str] = set()
    items: list[KeyItem] = []
    for active in bindings:
        binding = active.binding
        if not binding.show or binding.action in seen:
            continue
        seen.add(binding.action)
        items.append(KeyItem(binding.key, display(binding), binding.description, active.enabled))
    return tuple(items)


def render_keys(
    items: tuple[KeyItem, ...],
    palette: KeyItem | None,
    width: int,
    key_style: Style,
    description_style: Style,
    separator_style: Style,
) -> tuple[Text, list[tuple[int, int, KeyItem]]]:
    """One line: `` key description`` for each item, the palette key at the right edge;
    with the cell span of each key (for clicks)."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    spans: list[tuple[int, int, KeyItem]] = []
    dim = Style(dim=True)

    def add(item: KeyItem) -> None:
        start = text.cell_len
        extra = Style() if item.enabled else dim
        text.append(f" {item.display} ", key_style + extra)
        if item.description:
            text.append(f"{item.description} ", description_style + extra)
        spans.append((start, text.cell_len, item))

    for item in items:
        add(item)
    if palette is not None:  # as the footer shows it: compact, after a thin rule
        tail = 1 + cell_len(palette.display) + 1 + cell_len(palette.description) + 1
        gap = width - text.cell_len - tail
        if gap >= 0:
            text.append(" " * gap)
            text.append("▏", separator_style)
            start = text.cell_len
            extra = Style() if palette.enabled else dim
            text.append(palette.display, key_style + extra)
            text.append(f" {palette.description}", description_style + extra)
            spans.append((start, text.cell_len, palette))
            text.append(" ")
    return text, spans


class KeyBar(Widget):
    """Docked at the bottom of its screen; shows ``screen.active_bindings``."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "footer-key--key",
        "footer-key--description",
        "key-bar--separator",
    }
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        .footer-key--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .footer-key--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .key-bar--separator {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: tuple[KeyItem, ...] = ()
        self.palette: KeyItem | None = None
        self.spans: list[tuple[int, int, KeyItem]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        app = self.app
        active = screen.active_bindings
        items = key_items(active.values(), app.get_key_display)
        palette = None
        found = active.get(app.COMMAND_PALETTE_BINDING) if app.ENABLE_COMMAND_PALETTE else None
        if found is not None:
            palette = KeyItem(
                found.binding.key,
                app.get_key_display(found.binding),
                found.binding.description,
                found.enabled,
            )
        if (items, palette) != (self.items, self.palette):
            self.items, self.palette = items, palette
            self.refresh()  # one line, same size: a repaint, no layout

    def render(self) -> Text:
        text, self.spans = render_keys(
            self.items,
            self.palette,
            self.size.width,
            self.get_component_rich_style("footer-key--key"),
            self.get_component_rich_style("footer-key--description"),
            self.get_component_rich_style("key-bar--separator"),
        )
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, item in self.spans:
            if start <= event.x < end:
                event.stop()
                if item.enabled:
                    self.app.simulate_key(item.key)
                else:
                    self.app.bell()
                return
