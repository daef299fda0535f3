"""Which loopback ports are taken, and by which process.

Used by ``local up`` (take the configured port when free, another one otherwise, and name the
process holding a port the operator asked for) and ``local status`` ("port in use by another
process" rather than "stopped"). Finding the process reads ``/proc`` (Linux): the listening
socket's inode in ``/proc/net/tcp*``, then the process holding that inode among the
``/proc/<pid>/fd`` links it may read. Elsewhere, or without permission, the process is simply
not named.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free now (another process may take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not bind ``host:port`` now (SO_REUSEADDR, as servers do, so a
    connection lingering in TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class PortUser:
    """The process listening on a port."""

    pid: int
    name: str  # the program (argv[0]'s base name)
    cwd: str | None = None  # where it runs (a data folder tells which checkout it belongs to)

    def describe(self) -> str:
        where = f", in {self.cwd}" if self.cwd else ""
        return f"{self.name} (pid {self.pid}{where})"

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "cwd": self.cwd}


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _LISTEN:
                continue
            local_port = cols[1].rpartition(":")[2]
            with contextlib.suppress(ValueError):
                if int(local_port, 16) == port:
                    inodes.add(cols[9])
    return inodes


def _holds(pid: int, targets: set[str]) -> bool:
    try:
        fds = os.listdir(_PROC / str(pid) / "fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(_PROC / str(pid) / "fd" / fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in targets:
            return True
    return False


def _describe(pid: int) -> PortUser:
    name = "?"
    try:
        argv0 = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
        name = os.path.basename(argv0.decode("utf-8", "replace").split(" ", 1)[0]) or "?"
    except OSError:
        pass
    if name == "?":
        with contextlib.suppress(OSError):
            name = (_PROC / str(pid) / "comm").read_text().strip() or "?"
    cwd: str | None = None
    with contextlib.suppress(OSError):
        cwd = os.readlink(_PROC / str(pid) / "cwd")
    return PortUser(pid, name, cwd)


def who_listens(port: int) -> PortUser | None:
    """The process listening on TCP ``port`` (any address), or None when there is none or it
    cannot be found (not Linux; another user's process without the permission to look)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    try:
        pids = sorted(int(entry) for entry in os.listdir(_PROC) if entry.isdigit())
    except OSError:
        return None
    for pid in pids:
        if _holds(pid, inodes):
            return _describe(pid)
    return None


def listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` listens on TCP ``port``; None when that cannot be told (no
    ``/proc``, or no permission to read the process's descriptors)."""
    if not (_PROC / "net" / "tcp").exists() or not os.access(_PROC / str(pid) / "fd", os.R_OK):
        return None
    inodes = _listening_inodes(port)
    return bool(inodes) and _holds(pid, inodes)
