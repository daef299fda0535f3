"""How long each command held the server, a transaction's EXEC included, for
benchmarks/impact.py and benchmarks/inspect_scale.py.

Redis 7.0's SLOWLOG never lists EXEC (the command is flagged to skip it): it lists the MULTI
and each command run inside the transaction, at EXEC time, under the client's own address.
The sum of those inner entries is not the transaction's hold either: on a private 7.0.15
server, one EXEC of N HSETs held the server (INFO commandstats, one call) 569 us for N=100
against 278 us summed over its entries, 1,712 / 847 us for 1,000, 10,317 / 3,327 for 5,000,
34,274 / 22,573 for 20,000 (freeing the queued commands, logging each at threshold 0 and
the latency histograms are EXEC's, not the entries'). The server's own latency tracking
(``INFO latencystats``, on by default since 7.0, reset by ``CONFIG RESETSTAT``) times the
whole EXEC like any command: its p100 was 34,340.863 us for the 34,274 us above (an HDR
histogram, ~1 %). ``LATENCY LATEST`` sees EXEC too ("command" event) but in whole ms and
only over its threshold.

So a window's longest command of ours is SLOWLOG's longest entry of ours and, when one of
our clients ran a transaction in the window (a MULTI of ours in SLOWLOG), the longest EXEC
from latencystats. latencystats does not say whose EXEC it was: when the probe's EXEC (its
moves) were the longer, it is charged to the operation, never the other way round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# the percentiles INFO latencystats reports (100: the longest call since CONFIG RESETSTAT)
PERCENTILES = "50 99 100"
SCRIPT_PEER = "?:0"  # SLOWLOG's peer for the commands a script runs (counted in its own entry)
BUDGET_MS = 1.0


@dataclasses.dataclass(frozen=True)
class Entry:
    """One SLOWLOG entry: its id, microseconds, command name, peer and client name."""

    id: int
    micros: int
    command: str
    peer: str
    name: str


@dataclasses.dataclass(frozen=True)
class Transaction:
    """A MULTI of one client and the commands its EXEC ran (SLOWLOG logs them at EXEC time,
    one after another: nothing else runs during an EXEC)."""

    peer: str
    name: str
    commands: int
    inner_micros: int  # their entries summed: a lower bound of the EXEC's hold


def entries(raw: Iterable[Sequence[Any]]) -> list[Entry]:
    """SLOWLOG GET's rows ([id, time, micros, [args], peer, name]), oldest first."""
    out = []
    for row in raw:
        args = row[3]
        command = _text(args[0]).upper() if args else "?"
        peer = _text(row[4]) if len(row) > 4 else ""
        name = _text(row[5]) if len(row) > 5 else ""
        out.append(Entry(int(row[0]), int(row[2]), command, peer, name))
    return sorted(out, key=lambda e: e.id)


def transactions(log: Sequence[Entry]) -> list[Transaction]:
    """Each MULTI in ``log`` (oldest first) with the commands its EXEC ran: after the
    MULTI, other clients' entries (they ran while this one queued), then this client's run of
    entries (a script's inner calls within it skipped: its own entry counts them), ended by
    another client's entry or this client's next MULTI. A command this client pipelined
    right after the EXEC, before any other client's, is counted in (an overestimate)."""
    found = []
    for i, entry in enumerate(log):
        if entry.command != "MULTI":
            continue
        commands, micros, started = 0, 0, False
        for later in log[i + 1 :]:
            if later.peer == SCRIPT_PEER and started:
                continue
            if (later.peer, later.name) != (entry.peer, entry.name):
                if started:
                    break
                continue
            if later.command == "MULTI":
                break
            started = True
            commands += 1
            micros += later.micros
        found.append(Transaction(entry.peer, entry.name, commands, micros))
    return found


def latency_maxima(info: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """``INFO latencystats`` as parsed by redis-py: command -> (p99, p100) in microseconds
    (needs ``latency-tracking-info-percentiles`` to include 100)."""
    out = {}
    for key, value in info.items():
        if key.startswith("latency_percentiles_usec_") and isinstance(value, Mapping):
            command = key.removeprefix("latency_percentiles_usec_").upper()
            out[command] = (float(value.get("p99", 0.0)), float(value.get("p100", 0.0)))
    return out


@dataclasses.dataclass(frozen=True)
class Longest:
    ms: float
    name: str
    over_budget: int  # ours over BUDGET_MS (entries; an EXEC counted when its hold is)
    count: int  # ours: entries (a script's inner calls left out) and transactions
    transactions: int
    exec_ms: float  # the window's longest EXEC (latencystats), 0 when ours ran none


def longest_of_ours(
    log: Sequence[Entry], stats: Mapping[str, tuple[float, float]], exclude: set[str]
) -> Longest:
    """The longest command of the clients not named in ``exclude`` (nor SLOWLOG's readers),
    a transaction's whole EXEC included (see the module's docstring)."""
    longest, name, over, count = 0.0, "-", 0, 0
    for entry in log:
        if entry.name in exclude or entry.peer == SCRIPT_PEER or entry.command == "SLOWLOG":
            continue
        count += 1
        ms = entry.micros / 1000
        over += ms > BUDGET_MS
        if ms > longest:
            longest, name = ms, entry.command
    ours = [t for t in transactions(log) if t.name not in exclude]
    exec_ms = stats.get("EXEC", (0.0, 0.0))[1] / 1000 if ours else 0.0
    if ours:
        count += len(ours)
        # the longest EXEC over budget: at least one of ours (or the probe's, charged to us)
        over += exec_ms > BUDGET_MS
        if exec_ms > longest:
            longest, name = exec_ms, "EXEC"
    return Longest(longest, name, over, count, len(ours), exec_ms)


def longest_any(
    stats: Mapping[str, tuple[float, float]], skip: Iterable[str] = ("SLOWLOG|GET",)
) -> tuple[float, str]:
    """The longest call of any command since the last CONFIG RESETSTAT, EXEC included, in
    ms with its command (the benchmark's own reads in ``skip`` left out)."""
    left_out = {s.upper() for s in skip}
    best = (0.0, "-")
    for command, (_, p100) in stats.items():
        if command not in left_out and p100 / 1000 > best[0]:
            best = (p100 / 1000, command)
    return best


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def reset_holds(r: Any) -> None:
    """Latency histograms from now on, with the longest call of each command (CONFIG
    RESETSTAT: commandstats start over too)."""
    await r.config_set("latency-tracking-info-percentiles", PERCENTILES)
    await r.config_resetstat()


async def longest_exec(r: Any) -> float:
    """The longest EXEC since :func:`reset_holds`, in ms (0: none ran)."""
    return latency_maxima(await r.info("latencystats")).get("EXEC", (0.0, 0.0))[1] / 1000
