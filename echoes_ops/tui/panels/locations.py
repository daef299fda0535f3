"""Locations: players per location, busiest first, with a bar; Enter shows its players."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from echoes_ops.fmt import bar, duration, maybe, number
from echoes_ops.operations.locations import LocationDetail, LocationList
from echoes_ops.tui.jobs import load
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import Row, TablePanel

BAR_WIDTH = 24


def location_rows(locations: LocationList, width: int = BAR_WIDTH) -> list[Row]:
    top = locations.locations[0].players if locations.locations else 0
    return [
        (
            loc.location_id,
            (
                loc.location_id,
                maybe(loc.name),
                number(loc.players),
                Text(bar(loc.players, top, width), style="cyan"),
            ),
        )
        for loc in locations.locations
    ]


def render_location(detail: LocationDetail) -> RenderableType:
    head = Text()
    head.append(f"{detail.location_id}", style="bold")
    head.append(f"  {detail.name or ''}  {len(detail.members)} players")
    drifted = {m.character_id for m in detail.drifted}
    if drifted:
        head.append(f"  {len(drifted)} drifted", style="bold yellow")
    table = Table(
        "player", "name", "worker", "level", "hp", "heartbeat", "note", box=None, pad_edge=False
    )
    for m in detail.members:
        note = ""
        if not m.has_session:
            note = "no session"
        elif m.session_location != detail.location_id:
            note = f"session says {m.session_location}"
        table.add_row(
            str(m.character_id),
            maybe(m.username),
            maybe(m.worker_id),
            maybe(m.level),
            maybe(m.hp),
            duration(m.heartbeat_age) if m.heartbeat_age is not None else "unknown",
            Text(note, style="yellow"),
        )
    return Group(head, table)


class LocationsPanel(TablePanel):
    COLUMNS = ("location", "name", "players", "")
    PREFILL = True

    def show_state(self, state: DashboardState) -> None:
        snap = state.snapshot
        if snap is None:
            return
        self.set_rows(location_rows(snap.locations))
        stale = "  STALE" if state.stale else ""
        self.set_hint(
            f"{number(snap.locations.total_players)} players in "
            f"{number(snap.locations.total_locations)} locations — Enter: who is there{stale}"
        )

    def drill(self, key: str) -> None:
        load(self, "detail:location", lambda: self.source.location_detail(key))

    def render_detail(self, value: object) -> RenderableType:
        return render_location(value) if isinstance(value, LocationDetail) else Text(str(value))
