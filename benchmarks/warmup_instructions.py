"""The server's work per character counted in instructions (``benchmarks/warmup.py
--server-split --instructions``): the same ways as the CPU-time split, sent to a second
redis-server that runs under valgrind's callgrind.

CPU time on a shared two-core machine moves with the load (the same calls measured 16 to 28
us per character within minutes); the number of instructions the server executes for the
same commands does not, so two ways can be compared while other work runs. Instructions are
not time (cache misses and system calls are left out, so a way with more round trips looks
cheaper than it is): read them beside the CPU-time split, not instead of it. Under valgrind
the server runs about fifty times slower; a few thousand characters are enough
(``--characters 3000``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from echoes_ops.local.redis_server import RedisServer


@dataclass
class CallgrindServer(RedisServer):
    """A redis-server under callgrind (it daemonizes: valgrind follows the child)."""

    def command(self) -> list[str]:
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
        return [
            valgrind,
            "--tool=callgrind",
            "--trace-children=yes",
            "--dump-instr=no",
            # valgrind's own messages to a file: its inherited stderr would keep the
            # starting process's pipe open after the server daemonizes
            f"--log-file={self.data_dir}/valgrind.%p.log",
            f"--callgrind-out-file={self.data_dir}/callgrind.%p",
            *super().command(),
        ]

    def start(self, timeout: float = 120.0) -> None:
        super().start(timeout)

    def instructions(self) -> int:
        """Instructions the server executed since the last call (callgrind's counters are
        dumped and zeroed)."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError("the callgrind redis-server is not running")
        before = set(self.data_dir.glob(f"callgrind.{pid}.*"))
        subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
        (dump,) = set(self.data_dir.glob(f"callgrind.{pid}.*")) - before
        return _summary(dump)


def _summary(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {dump}")


async def counted(server: CallgrindServer, send: Callable[[], Awaitable[None]]) -> int:
    """Instructions the server executed for what ``send`` sends."""
    server.instructions()  # zero the counters
    await send()
    return server.instructions()
