"""The tables of benchmarks/impact.py: one row per window, and with ``--repeat`` the summary
per operation (the median of its paired Δp99 and their spread)."""

from __future__ import annotations

import dataclasses
import statistics

from benchmarks.impact_probe import BUDGET_MS

STALL_MS = 10  # latency-monitor-threshold: server events at least this long are reported


@dataclasses.dataclass
class Row:
    label: str
    samples: list[float]  # probe latencies, ms (from the time each call was due)
    calls: list[float]  # the same calls' own round trips, ms (lateness left out)
    longest_ms: float  # longest command of the operation (not the probe's)
    longest_name: str
    over_budget: int  # the operation's commands over BUDGET_MS
    commands: int
    seconds: float
    server_cpu: float  # redis-server's main-thread CPU seconds during the operation
    op_cpu: float  # the operation's own process CPU seconds
    waits: tuple[float, float]  # seconds the probe / redis-server waited for a CPU (runqueue)
    stall: tuple[float, str] = (0.0, "-")  # the server's longest latency event (LATENCY), ms
    idle: Row | None = None  # the idle window this one is compared with (None: an idle one)
    round: int = 1  # which repetition (--repeat)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 0.99)

    @property
    def delta_p99(self) -> float:
        """The probe's p99 here less its p99 in the paired idle window (0 for an idle one)."""
        return 0.0 if self.idle is None else self.p99 - self.idle.p99


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(rows: list[Row]) -> None:
    """Every window, in the order run; Δp99 against each one's paired idle window."""
    # wide enough for every label (--wrap and --realtime add theirs), 38 at least
    w = max([38, *(len(row.label) + 6 for row in rows)])
    print(
        f"\n{'operation':<{w}}{'secs':>6}{'calls':>6}{'p50 ms':>7}{'p99 ms':>8}{'Δp99':>8}"
        f"{'max ms':>8}{'call p99':>9}{'srv%':>5}{'op%':>5}{'rq p':>5}{'rq s':>5}"
        f"{'longest cmd':>16}{'>1ms':>6}{'srv stall':>18}"
    )
    repeated = max(row.round for row in rows) > 1
    for row in rows:
        p50 = statistics.median(row.samples) if row.samples else float("nan")
        top = max(row.samples) if row.samples else float("nan")
        longest = f"{row.longest_ms:.2f} {row.longest_name}" if row.commands else "-"
        label = f"{row.label} #{row.round}" if repeated else row.label
        print(
            f"{label:<{w}}{row.seconds:>6.1f}{len(row.samples):>6}{p50:>7.2f}{row.p99:>8.2f}"
            f"{row.delta_p99:>+8.2f}{top:>8.2f}{percentile(row.calls, 0.99):>9.2f}"
            f"{100 * row.server_cpu / row.seconds:>5.0f}{100 * row.op_cpu / row.seconds:>5.0f}"
            f"{100 * row.waits[0] / row.seconds:>5.1f}{100 * row.waits[1] / row.seconds:>5.1f}"
            f"{longest:>16}{row.over_budget:>6}"
            f"{(f'{row.stall[0]:.0f} {row.stall[1]}' if row.stall[0] else '-'):>18}"
        )
    pairing = (
        "each operation's window against the idle window just before it"
        if repeated
        else "against the idle window at the start"
    )
    print(
        f"\nbudget: the probe's p99 within {BUDGET_MS:.0f} ms of idle (Δp99: {pairing}), "
        "every command of ours at most 1 ms p99 / 2 ms max (longest cmd, >1ms counts ours "
        "over 1 ms).\n"
        "p50/p99/max count from the time each probe call was due (a stall delays the calls "
        "behind it); call p99 is the calls' own round trips. srv% is redis-server's CPU, op% "
        "the operation's process CPU, rq p / rq s the share of the wall time the probe / "
        "redis-server spent runnable but waiting for a CPU (schedstat), in %. srv stall is "
        f"the server's longest latency event of at least {STALL_MS} ms (LATENCY LATEST: a "
        "command, inner script calls included, an expire cycle, ...).\n"
        "simulate is the reference load: the game itself (its workers' commands), not an "
        "echoes-ops operation. The first-load and --force preload's atomic EXEC is the "
        "documented exception to the budget (preload --online is the stepped writer for a "
        "live tier)."
    )


@dataclasses.dataclass
class Summary:
    """One operation over its repetitions."""

    label: str
    deltas: list[float]  # each repetition's Δp99 against its paired idle window
    pooled: float  # p99 of all its windows' samples less that of all their idle windows
    idle_p99: float  # the median of the paired idle windows' p99
    seconds: float  # the median wall time
    longest_ms: float  # the longest command of ours over every repetition
    longest_name: str
    over_budget: int  # ours over 1 ms, every repetition

    @property
    def median(self) -> float:
        return statistics.median(self.deltas)


def summarize(rows: list[Row]) -> list[Summary]:
    """Per operation (in the order first run), its repetitions' paired Δp99."""
    by_label: dict[str, list[Row]] = {}
    for row in rows:
        if row.idle is not None:
            by_label.setdefault(row.label, []).append(row)
    out = []
    for label, runs in by_label.items():
        idles = [run.idle for run in runs if run.idle is not None]
        top = max(runs, key=lambda run: run.longest_ms)
        out.append(
            Summary(
                label=label,
                deltas=[run.delta_p99 for run in runs],
                pooled=percentile([ms for run in runs for ms in run.samples], 0.99)
                - percentile([ms for idle in idles for ms in idle.samples], 0.99),
                idle_p99=statistics.median(idle.p99 for idle in idles),
                seconds=statistics.median(run.seconds for run in runs),
                longest_ms=top.longest_ms,
                longest_name=top.longest_name if top.commands else "-",
                over_budget=sum(run.over_budget for run in runs),
            )
        )
    return out


def report_summary(rows: list[Row]) -> None:
    """The one figure per operation to quote: the median of its paired Δp99."""
    summaries = summarize(rows)
    if not summaries or len(summaries[0].deltas) < 2:
        return
    w = max([38, *(len(s.label) + 1 for s in summaries)])
    print(
        f"\n{'operation (over N runs)':<{w}}{'N':>3}{'median Δp99':>12}{'min':>8}{'max':>8}"
        f"{'pooled Δp99':>12}{'idle p99':>9}{'secs':>6}{'longest cmd':>16}{'>1ms':>6}  within"
    )
    for s in summaries:
        verdict = "yes" if s.median <= BUDGET_MS else "NO"
        print(
            f"{s.label:<{w}}{len(s.deltas):>3}{s.median:>+12.2f}{min(s.deltas):>+8.2f}"
            f"{max(s.deltas):>+8.2f}{s.pooled:>+12.2f}{s.idle_p99:>9.2f}{s.seconds:>6.1f}"
            f"{f'{s.longest_ms:.2f} {s.longest_name}':>16}{s.over_budget:>6}  {verdict}"
        )
    print(
        "\nmedian Δp99: the median over the runs of (the operation window's p99 less the p99 "
        "of the idle window just before it); min/max: their spread. pooled Δp99: the p99 of "
        "all the operation's windows' probe calls less that of all their idle windows. "
        f"within: median Δp99 <= {BUDGET_MS:.0f} ms."
    )
