"""Overview: players, sessions, workers, locks, memory, hit rate, evictions, rates, drift."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from echoes_ops.fmt import clock_time, number, percent, size
from echoes_ops.operations.cluster_health import ClusterHealth, NodeHealth
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.spark import Spark


def overview_rows(state: DashboardState) -> list[tuple[str, str]]:
    """(label, value) rows of the overview; "-" where nothing is known yet."""
    snap, tier, rates = state.snapshot, state.tier, state.history.last
    rows: list[tuple[str, str]] = []
    if snap is None:
        return [("status", "waiting for the first reading")]
    if state.stale:
        rows.append(("STALE", f"disconnected: last data read at {clock_time(snap.taken_at)}"))
    head = snap.flag.headline
    rows.append((head.name, f"{head.value or 'unknown'} ({head.source}); {head.modes}"))
    if head.alarms:
        rows.append(("ALARM", "; ".join(head.alarms)))
    elif head.note:
        rows.append(("note", head.note))
    loc = snap.locations
    rows.append(
        (
            "players online",
            f"{number(loc.total_players)} in {number(loc.total_locations)} locations",
        )
    )
    if tier is None:
        rows.append(("sessions", "counting…"))
    else:
        t = tier.summary
        rows.append(
            (
                "sessions",
                f"{number(t.sessions)}, stale {number(t.stale_sessions)} "
                f"(heartbeat > {t.stale_after:g}s), unknown {number(t.unknown_heartbeat)}"
                f"  [as of {clock_time(tier.taken_at)}]",
            )
        )
    states = [w.state for w in snap.workers]
    stuck = states.count("unresponsive")
    rows.append(
        (
            "workers",
            f"{states.count('alive')} alive, "
            f"{f'{stuck} UNRESPONSIVE, ' if stuck else ''}{states.count('dead')} dead",
        )
    )
    rows.append(("locks", number(len(snap.locks))))
    c = snap.counters
    if c.maxmemory:
        memory = (
            f"{size(c.used_memory)} of {size(c.maxmemory)} ({percent(c.used_memory / c.maxmemory)})"
        )
    else:
        memory = f"{size(c.used_memory)} (no maxmemory)"
    rows.append(("memory", f"{memory}, policy {c.maxmemory_policy}"))
    rows.append(("hit rate", percent(rates.hit_rate) if rates else "-"))
    rows.append(
        (
            "evictions",
            f"{number(rates.evicted) if rates else '-'} last interval, {number(c.evicted_keys)} since start",
        )
    )
    rows.append(("clients", f"{number(c.connected_clients)} connected, {number(c.keys)} keys"))
    if snap.cluster is not None:
        rows += cluster_rows(snap.cluster)
    rows.append(("drift", _drift(state)))
    return rows


def cluster_rows(health: ClusterHealth) -> list[tuple[str, str]]:
    """The cluster line, one line per node (a node down says so, with why), then what is
    wrong with the cluster as a whole."""
    rows = [
        (
            "cluster",
            f"{health.label}, cluster_state {health.state}, "
            f"{percent(health.slot_coverage)} of the slots served",
        )
    ]
    for node in health.nodes:
        rows.append(("DOWN" if not node.up else node.role, node_line(node)))
    if health.problems:
        rows.append(("CLUSTER", "; ".join(health.problems)))
    return rows


def node_line(node: NodeHealth) -> str:
    where = node.address
    if node.role == "replica":
        where += f" of {node.primary or '?'}"
    elif node.slot_ranges:
        where += f" slots {node.slot_ranges}"
    if node.flags:
        where += f" [{','.join(node.flags)}]"
    if not node.up:
        return f"{where}: {node.error or 'not answering'}"
    parts = [where]
    if node.used_memory is not None:
        parts.append(size(node.used_memory))
    if node.ops_per_sec is not None:
        parts.append(f"{number(node.ops_per_sec)} ops/s")
    if node.connected_clients is not None:
        parts.append(f"{number(node.connected_clients)} clients")
    if node.role == "replica":
        lag = "?" if node.lag_bytes is None else f"{number(node.lag_bytes)} B"
        parts.append(f"link {node.link or '?'}, lag {lag}")
    return ", ".join(parts)


def _drift(state: DashboardState) -> str:
    drift = state.drift
    if drift is None:
        return "checking…"
    found = {kind: n for kind, n in drift.counts.items() if n}
    when = f"  [as of {clock_time(drift.taken_at)}]"
    if not found:
        return "none found" + when
    return ", ".join(f"{kind} {n}" for kind, n in found.items()) + when


def render_overview(state: DashboardState, rows: list[tuple[str, str]] | None = None) -> Table:
    """The overview as a two-column grid (``rows``: :func:`overview_rows`, when known)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in overview_rows(state) if rows is None else rows:
        style = "red" if label == "drift" and value[:1].isalpha() and "_" in value else ""
        if label in ("STALE", "ALARM", "DOWN", "CLUSTER"):
            style = "bold red"
        elif label == "note":
            style = "yellow"
        elif label == "REDIS_ENABLED":
            style = {"true": "green", "false": "bold red"}.get(value.split(" ", 1)[0], "yellow")
        table.add_row(label, Text(value, style=style))
    return table


def rate_label(name: str, samples: list[float]) -> str:
    if not samples:
        return f"{name}: -"
    return f"{name}: {number(round(samples[-1]))}  (max {number(round(max(samples)))} over {len(samples)} readings)"


class OverviewPanel(VerticalScroll):
    DEFAULT_CSS = """
    OverviewPanel { padding: 0 1; }
    OverviewPanel > #overview-table { height: auto; margin-bottom: 1; }
    OverviewPanel > Spark { height: 1fr; min-height: 2; max-height: 8; margin-bottom: 1; }
    OverviewPanel > .label { height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="overview-table")
        yield Static("ops/s", classes="label", id="ops-label")
        yield Spark(id="ops")
        yield Static("pub/sub messages/s", classes="label", id="pub-label")
        yield Spark(id="pub")

    shape: tuple[int, ...] = ()  # the overview's cell widths last shown

    def show_state(self, state: DashboardState) -> None:
        rows = overview_rows(state)
        # Its height changes only when a row or a cell's length does (values fold at the
        # edge): only then is a layout of the screen needed, else a repaint will do.
        shape = (self.size.width, *(len(cell) for row in rows for cell in row))
        layout, self.shape = shape != self.shape, shape
        self.query_one("#overview-table", Static).update(
            render_overview(state, rows), layout=layout
        )
        ops = list(state.history.ops)
        pub = list(state.history.publishes)
        # labels are one line each: a repaint, no layout of the screen
        label = rate_label("ops/s (all clients)", ops)
        self.query_one("#ops-label", Static).update(label, layout=False)
        label = rate_label("pub/sub messages/s", pub)
        self.query_one("#pub-label", Static).update(label, layout=False)
        self.query_one("#ops", Spark).data = ops
        self.query_one("#pub", Spark).data = pub
