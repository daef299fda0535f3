"""benchmarks/impact_report.py's arithmetic (pure logic): each window's Δp99 against its paired
idle window, and per operation the median over its repetitions, their spread and the pooled
Δp99 (the figures issue #16 quotes)."""

from __future__ import annotations

import pytest

from benchmarks.impact_report import Row, percentile, report, report_summary, summarize


def _row(label: str, samples: list[float], *, idle: Row | None = None, round_: int = 1) -> Row:
    return Row(
        label,
        samples,
        samples,
        0.5 if idle else 0.0,
        "SCAN" if idle else "-",
        0,
        1 if idle else 0,
        1.0,
        0.1,
        0.0,
        (0.0, 0.0),
        idle=idle,
        round=round_,
    )


def _flat(level: float, spike: float = 0.0, n: int = 100) -> list[float]:
    """``n`` calls at ``level`` ms, the worst 2 at ``spike`` ms (the p99 of 100 calls is the
    second worst)."""
    return [level] * (n - 2) + [spike or level] * 2


def test_each_window_is_compared_with_its_own_idle_window() -> None:
    quiet = _row("idle (probe alone)", _flat(1.0))
    busy = _row("idle (probe alone)", _flat(1.0, 5.0))
    after_quiet = _row("stats", _flat(1.0, 2.5), idle=quiet)
    after_busy = _row("stats", _flat(1.0, 5.5), idle=busy, round_=2)
    assert percentile(busy.samples, 0.99) == 5.0
    assert after_quiet.delta_p99 == pytest.approx(1.5)
    assert after_busy.delta_p99 == pytest.approx(0.5)  # not +4.5 against the first idle
    assert busy.delta_p99 == 0.0


def test_the_summary_is_the_median_of_the_paired_deltas_with_their_spread() -> None:
    rows: list[Row] = []
    for round_, (idle_spike, op_spike) in enumerate([(0, 1.4), (6.0, 6.3), (0, 9.0)], start=1):
        idle = _row("idle (probe alone)", _flat(1.0, idle_spike), round_=round_)
        rows += [idle, _row("doctor", _flat(1.0, op_spike), idle=idle, round_=round_)]
    (doctor,) = summarize(rows)
    assert doctor.label == "doctor"
    assert doctor.deltas == pytest.approx([0.4, 0.3, 8.0])
    assert doctor.median == pytest.approx(0.4)  # one bad repetition does not decide it
    # pooled: the p99 of the 300 calls of the three windows (their 3rd worst: 9.0, 9.0, 6.3)
    # less the idle windows' (6.0, 6.0, 1.0)
    assert doctor.pooled == pytest.approx(5.3)
    assert doctor.idle_p99 == pytest.approx(1.0)
    assert doctor.over_budget == 0


def test_the_tables_print_per_window_and_per_operation(capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[Row] = []
    for round_ in (1, 2):
        idle = _row("idle (probe alone)", _flat(1.0), round_=round_)
        rows += [idle, _row("reconcile (dry run)", _flat(1.0, 1.5), idle=idle, round_=round_)]
    report(rows)
    report_summary(rows)
    out = capsys.readouterr().out
    assert "reconcile (dry run) #2" in out
    line = next(x for x in out.splitlines() if x.startswith("reconcile (dry run)  "))
    assert line.split()[3:7] == ["2", "+0.50", "+0.50", "+0.50"]
    assert line.rstrip().endswith("yes")


def test_a_single_pass_prints_no_summary(capsys: pytest.CaptureFixture[str]) -> None:
    idle = _row("idle (probe alone)", _flat(1.0))
    report_summary([idle, _row("stats", _flat(1.0, 3.0), idle=idle)])
    assert capsys.readouterr().out == ""


def test_long_labels_are_printed_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """--wrap and --realtime rows differ only at their end: cut at 37 characters, the
    summary's rows could not be told apart."""
    plain = "preload --online, 10 changed [env ECHOES_OPS_NICE=idle]"
    rows: list[Row] = []
    for round_ in (1, 2):
        for label in (plain, f"{plain} [rt+probe]"):
            idle = _row("idle (probe alone)", _flat(1.0), round_=round_)
            rows += [idle, _row(label, _flat(1.0, 2.0), idle=idle, round_=round_)]
    report(rows)
    report_summary(rows)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith(f"{plain} [rt+probe] #2 ") for line in lines) == 1
    assert sum(line.startswith(f"{plain} [rt+probe]  ") for line in lines) == 1  # summary
    assert sum(line.startswith(f"{plain}  ") for line in lines) == 1
