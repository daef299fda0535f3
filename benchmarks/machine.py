"""What the shared machine and the benchmarks' processes are doing, read once here for every
benchmark: the load average printed beside each figure, and CPU seconds from Linux's /proc,
which survive a busy machine better than wall time."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``0.70 0.98 1.30``."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def load_line() -> str:
    """``load average 0.70 0.98 1.30 (2 CPUs)``."""
    return f"load average {load_average()} ({os.cpu_count()} CPUs)"


def process_cpu(pid: int, *, ended_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` so far (0.0 for a process that has ended);
    ``ended_children``: with its children that ended and were waited for (a PostgreSQL
    backend's CPU moves to the postmaster when its connection closes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if ended_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def processes_cpu(pids: Iterable[int]) -> float:
    """:func:`process_cpu` summed over ``pids``."""
    return sum(process_cpu(pid) for pid in pids)


def machine_busy() -> float:
    """CPU seconds all processors spent busy since boot (steal included)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def main_thread_waits(pid: int) -> tuple[int, int]:
    """A process's main thread: ns runnable but waiting for a CPU (schedstat), and the times
    it lost its CPU while it had work (involuntary context switches)."""
    task = Path(f"/proc/{pid}/task/{pid}")
    waited = int((task / "schedstat").read_text().split()[1])
    status = (task / "status").read_text()
    return waited, int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])


def children_of(root: int) -> list[int]:
    """The live child processes of ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == root:
                found.append(int(entry.name))
    return found


def postgres_cpu(postmaster: int | None) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster with its ended children
    (a backend's CPU moves to the postmaster when its connection closes) and the live ones
    (backends of this cluster only); 0.0 without a postmaster."""
    if not postmaster:
        return 0.0
    return process_cpu(postmaster, ended_children=True) + processes_cpu(children_of(postmaster))
