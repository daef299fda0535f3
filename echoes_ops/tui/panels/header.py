"""The header: where, which server, connection state, REDIS_ENABLED, gamedata, mode."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from echoes_ops.fmt import clock_time
from echoes_ops.tui.model import DashboardState


def render_header(state: DashboardState) -> Text:
    """Two lines: connection, then the tier's switches and the dashboard's mode."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" echoes-ops ", style="bold reverse")
    if state.connected is None:
        text.append(" ○ connecting", style="yellow")
    elif state.connected:
        text.append(" ● connected", style="bold green")
    else:
        text.append(" ● DISCONNECTED", style="bold red")
        text.append(f" since {clock_time(state.disconnected_since)}", style="red")
    text.append(f"  {state.target}")
    snap = state.snapshot
    if snap is not None:
        text.append(f"  Redis {snap.counters.version}")
        if snap.counters.role != "master":
            text.append(f" ({snap.counters.role})", style="yellow")
    text.append("\n ")
    if snap is None:
        text.append("REDIS_ENABLED ?  gamedata ?", style="dim")
    else:
        enabled = snap.flag.value
        style = "bold green" if enabled == "true" else "bold red" if enabled else "dim"
        text.append("REDIS_ENABLED=")
        text.append(enabled or "unset (default true)", style=style)
        digest = snap.gamedata.get("content_hash")
        text.append("  gamedata ")
        text.append(digest[:12] if digest else "not loaded", style="" if digest else "yellow")
    if state.read_only:
        text.append("  READ-ONLY", style="bold yellow")
    if state.stale and snap is not None:
        text.append(f"  stale: last data {clock_time(snap.taken_at)}", style="bold red")
    elif snap is not None:
        text.append(f"  updated {clock_time(snap.taken_at)}", style="dim")
    return text


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { height: 2; background: $panel; }
    """

    def show_state(self, state: DashboardState) -> None:
        self.update(render_header(state))
