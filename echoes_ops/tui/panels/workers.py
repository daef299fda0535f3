"""Workers: liveness, connections, mode; Enter shows one worker's players."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from echoes_ops.contract import codec
from echoes_ops.fmt import duration, maybe, number, ttl
from echoes_ops.operations.drilldown import WorkerDetail
from echoes_ops.operations.tiermap import WorkerLiveness
from echoes_ops.tui.jobs import load
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import Row, TablePanel


def state_text(state: str) -> Text:
    """alive (green), UNRESPONSIVE (bold yellow: there but not beating) or DEAD (bold red)."""
    if state == "alive":
        return Text("alive", style="green")
    if state == "unresponsive":
        return Text("UNRESPONSIVE", style="bold yellow")
    return Text("DEAD", style="bold red")


def worker_rows(workers: list[WorkerLiveness], now: float) -> list[Row]:
    rows: list[Row] = []
    for w in workers:
        beat = codec.decode_epoch(w.meta.get("heartbeat"), now=now)
        rows.append(
            (
                w.worker_id,
                (
                    w.worker_id,
                    state_text(w.state),
                    maybe(w.meta.get("mode")),
                    number(w.connections),
                    ttl(w.meta_ttl),
                    duration(now - beat) if beat is not None else "?",
                    maybe(w.meta.get("version")),
                    maybe(w.meta.get("host")),
                ),
            )
        )
    return rows


def render_worker(detail: WorkerDetail) -> RenderableType:
    live = detail.liveness
    head = Text()
    head.append(f"{live.worker_id}  ", style="bold")
    head.append_text(state_text(live.state))
    head.append(
        f"  client connected: {'yes' if live.client_connected else 'no'}"
        f"  meta TTL {ttl(live.meta_ttl)}  connections {number(live.connections)}"
    )
    meta = "  ".join(f"{k}={v}" for k, v in sorted(live.meta.items()))
    table = Table("player", "name", "location", "session", box=None, pad_edge=False)
    for p in detail.players:
        session = (
            "names this worker" if p.names_worker else "elsewhere" if p.has_session else "none"
        )
        style = "" if p.names_worker else "yellow"
        table.add_row(
            str(p.character_id), maybe(p.username), maybe(p.location_id), Text(session, style=style)
        )
    more = Text(f"… first {len(detail.players)} shown", style="dim") if detail.more else Text("")
    return Group(head, Text(meta, style="dim"), table, more)


class WorkersPanel(TablePanel):
    COLUMNS = ("worker", "state", "mode", "conns", "meta TTL", "heartbeat", "version", "host")
    PREFILL = True

    def show_state(self, state: DashboardState) -> None:
        snap = state.snapshot
        if snap is None:
            return
        self.set_rows(worker_rows(snap.workers, snap.taken_at))
        alive = sum(1 for w in snap.workers if w.state == "alive")
        stuck = sum(1 for w in snap.workers if w.state == "unresponsive")
        stale = "  STALE" if state.stale else ""
        self.set_hint(
            f"{len(snap.workers)} workers, {alive} alive"
            f"{f', {stuck} UNRESPONSIVE' if stuck else ''} — Enter: details{stale}"
        )

    def drill(self, key: str) -> None:
        load(self, "detail:worker", lambda: self.source.worker_detail(key))

    def render_detail(self, value: object) -> RenderableType:
        return render_worker(value) if isinstance(value, WorkerDetail) else Text(str(value))
