"""The latency report as rich renderables: printed by ``echoes-ops latency`` and shown by the
dashboard's Latency tab (one rendering, two faces). Pure: no terminal, no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from echoes_ops.fmt import clock_time

if TYPE_CHECKING:
    from echoes_ops.operations.latency import LatencyReport

HISTORY_POINTS: Final = 12  # newest points of an event's history shown


def _ms(us: int) -> str:
    return f"{us / 1000:,.1f} ms" if us >= 1000 else f"{us} µs"


def render_latency(report: LatencyReport) -> RenderableType:
    parts: list[RenderableType] = []
    rt = report.round_trip
    parts.append(
        Text.assemble(
            ("round trip ", "bold"),
            f"over {rt.samples} PINGs from here: min {rt.min_ms:.2f} ms, avg {rt.avg_ms:.2f} ms, "
            f"p99 {rt.p99_ms:.2f} ms, max {rt.max_ms:.2f} ms",
        )
    )
    kept = "?" if report.slowlog_len is None else f"{report.slowlog_len:,}"
    threshold = "?" if report.slower_than_us is None else _ms(report.slower_than_us)
    parts.append(
        Text.assemble(
            ("SLOWLOG ", "bold"),
            f"{kept} entries kept (commands slower than {threshold}); "
            f"{len(report.slowlog)} newest shown",
        )
    )
    if report.slowlog:
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("time", no_wrap=True)
        table.add_column("took", justify="right", no_wrap=True)
        table.add_column("client", no_wrap=True, min_width=14)
        table.add_column("command", no_wrap=True)
        table.add_column("family", no_wrap=True, min_width=15)
        table.add_column("key", no_wrap=True, overflow="ellipsis", max_width=32)
        table.add_column("args", justify="right", no_wrap=True)
        for e in report.slowlog:
            client = Text(e.client, style="cyan" if e.worker else "")
            if e.worker:
                client.append(" (worker)", style="dim")
            table.add_row(
                clock_time(e.at),
                Text(_ms(e.duration_us), style="bold red" if e.duration_us >= 10_000 else ""),
                client,
                e.command,
                e.family,
                Text(e.key or "-", overflow="ellipsis", no_wrap=True),
                str(e.args),
            )
        parts.append(table)
    monitor = report.monitor_threshold_ms
    state = "?" if monitor is None else ("off" if monitor == 0 else f"events over {monitor} ms")
    parts.append(Text.assemble(("latency monitor ", "bold"), state))
    if report.events:
        events = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("event", "latest", "latest ms", "max ms", "history (ms, newest last)"):
            events.add_column(column, justify="right" if "ms" in column[:10] else "left")
        for ev in report.events:
            history = " ".join(str(ms) for _, ms in ev.history[-HISTORY_POINTS:])
            events.add_row(
                ev.event, clock_time(ev.latest_at), str(ev.latest_ms), str(ev.max_ms), history
            )
        parts.append(events)
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)
