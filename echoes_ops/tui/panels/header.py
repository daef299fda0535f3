"""The header, on every screen: the environment, connection state, which server, then
REDIS_ENABLED from its source of truth with the workers' modes (and a loud mark when
anything disagrees), gamedata, mode."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from echoes_ops.config import looks_like_production
from echoes_ops.fmt import clock_time
from echoes_ops.operations.flags import FlagStatus
from echoes_ops.tui.model import DashboardState


def render_header(state: DashboardState) -> Text:
    """Two lines: connection, then the tier's switches and the dashboard's mode."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" echoes-ops ", style="bold reverse")
    if state.environment:
        loud = looks_like_production(state.environment)
        text.append(" ")
        text.append(f" {state.environment} ", style="bold reverse red" if loud else "bold reverse")
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
        flag_line(text, snap.flag)
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


def flag_line(text: Text, status: FlagStatus) -> None:
    """``REDIS_ENABLED=false (PostgreSQL)  3/3 workers fallback``, then ``⚠`` and what
    disagrees, appended to ``text``."""
    head = status.headline
    style = {"true": "bold green", "false": "bold red"}.get(head.value or "", "bold yellow")
    text.append(f"{head.name}=")
    text.append(head.value or "unknown", style=style)
    text.append(f" ({head.source})", style="dim")
    text.append(f"  {head.modes}")
    if head.alarms:
        text.append("  ⚠ " + "; ".join(head.alarms), style="bold reverse red")
    elif head.note:
        text.append(f"  {head.note}", style="yellow")


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { height: 2; background: $panel; }
    """

    def show_state(self, state: DashboardState) -> None:
        # two lines whatever they say: a repaint, never a layout of the whole screen
        self.update(render_header(state), layout=False)
