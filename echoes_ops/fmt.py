"""How numbers, sizes, durations, TTLs and times read, for every face (CLI and dashboard).

Pure functions over plain values: no I/O, no UI library, so the lowest layer; the CLI, the
dashboard and the operations' messages all format the same value the same way:

- durations ``45s``, ``3m05s``, ``2h10m``, ``3d04h`` (never ``1799.0s`` or ``up 245 s``);
  ``timing`` keeps sub-second precision for how long a step took (``0.42s``);
- sizes in binary units ``512 B``, ``1.5 KiB``, ``3.2 MiB``;
- counts with thousands separators ``12,345``;
- TTLs as a duration, ``no TTL`` (-1) or ``gone`` (-2);
- timestamps with their time zone ``2026-12-06 00:24:35 UTC``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime


def duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h10m``, ``3d04h``; "?" when unknown; negative counts as 0."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def timing(seconds: float | None) -> str:
    """How long something took: ``0.42s`` under a minute, else as :func:`duration`."""
    if seconds is None:
        return "?"
    if 0 <= seconds < 60:
        return f"{seconds:.2f}s"
    return duration(seconds)


def age(seconds: float | None) -> str:
    """``12s ago``; ``unknown`` when there is no time to measure from."""
    return "unknown" if seconds is None else f"{duration(seconds)} ago"


def ttl(seconds: float | None) -> str:
    """A key's TTL as Redis reports it: ``no TTL`` for -1, ``gone`` for -2 (or any other
    negative), else the time left."""
    if seconds is None:
        return "?"
    if seconds == -1:
        return "no TTL"
    if seconds < 0:
        return "gone"
    if 0 < seconds < 10 and not float(seconds).is_integer():
        return f"{seconds:.1f}s"
    return duration(seconds)


def ttl_ms(milliseconds: int | None) -> str:
    """A PTTL (milliseconds): as :func:`ttl`, keeping tenths under ten seconds."""
    if milliseconds is None:
        return "?"
    if milliseconds < 0:
        return ttl(milliseconds)
    return ttl(milliseconds / 1000)


def size(n: float | None) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 MiB``; "?" when unknown."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def number(n: float | None) -> str:
    """``12,345``; a fraction keeps one decimal (``1,234.5``); "?" when unknown."""
    if n is None:
        return "?"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def percent(ratio: float | None) -> str:
    """A ratio in [0, 1] as ``97.5%``; "-" when there is none (nothing to divide)."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def timestamp(epoch: float | None) -> str:
    """Local date and time with its zone: ``2026-12-06 00:24:35 UTC``; "-" when unknown."""
    if epoch is None:
        return "-"
    local = datetime.fromtimestamp(epoch).astimezone()
    zone = local.strftime("%Z") or local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S ") + zone


def clock_time(epoch: float | None) -> str:
    """Local wall-clock time of day, ``HH:MM:SS`` ("-" when unknown): for "read at" marks
    on a screen whose header already shows the date and zone."""
    if epoch is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def named(ident: str | None, name: str | None) -> str:
    """An id with its display name beside it: ``main_street (Main Street)``; the id alone
    when there is no other name, "?" when there is neither."""
    if not ident:
        return name or "?"
    if not name or name == ident:
        return ident
    return f"{ident} ({name})"


def value(v: object) -> str:
    """Any stored value as an operator reads it, never as a Python repr: ``true``/``false``,
    lists comma-separated, mappings as compact JSON, ``-`` for None."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple | set | frozenset):
        return ",".join(value(item) for item in v)
    if isinstance(v, Mapping):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    return str(v)


def maybe(value: object) -> str:
    """``-`` for None, else the value as text."""
    return "-" if value is None else str(value)


def bar(value: int, top: int, width: int) -> str:
    """A horizontal bar of ``width`` cells at most, scaled to ``top``."""
    if top <= 0 or value <= 0:
        return ""
    cells = max(1, round(width * value / top))
    return "█" * min(width, cells)
