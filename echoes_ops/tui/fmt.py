"""Small pure formatters shared by the panels."""

from __future__ import annotations

import time


def clock_time(epoch: float | None) -> str:
    """Local wall-clock time of day, ``HH:MM:SS`` ("-" when unknown)."""
    if epoch is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h10m``; "?" when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def ttl(seconds: float | int | None) -> str:
    """A key's TTL: ``no TTL`` for -1, ``gone`` for -2."""
    if seconds is None:
        return "?"
    if seconds == -1:
        return "no TTL"
    if seconds == -2 or seconds < 0:
        return "gone"
    return duration(seconds)


def number(n: int | float) -> str:
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def bar(value: int, top: int, width: int) -> str:
    """A horizontal bar of ``width`` cells at most, scaled to ``top``."""
    if top <= 0 or value <= 0:
        return ""
    cells = max(1, round(width * value / top))
    return "█" * min(width, cells)


def maybe(value: object) -> str:
    return "-" if value is None else str(value)
