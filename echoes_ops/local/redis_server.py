"""A private redis-server process: used by ``echoes-ops local`` and by the test fixtures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from echoes_ops.config import build_redis_url
from echoes_ops.errors import ConfigError, UnreachableError
from echoes_ops.local.binaries import find_redis_server
from echoes_ops.local.ports import free_port, listens, port_in_use, who_listens
from echoes_ops.primitives.procs import process_alive

# the longest a start waits for its port to be released (a restart after a kill)
PORT_RELEASE_WAIT = 3.0

__all__ = ["RedisServer", "free_port", "process_alive"]


def _ping(host: str, port: int, password: str | None, timeout: float = 0.5) -> str | None:
    """PING over a raw socket; return the first reply line, or None if unreachable."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(256)
            sock.sendall(b"PING\r\n")
            return sock.recv(256).decode("utf-8", "replace").strip()
    except OSError:
        return None


@dataclass
class RedisServer:
    """One daemonized redis-server bound to loopback, data and logs in ``data_dir``."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if not self.port:
            self.port = free_port(self.host)

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        return build_redis_url(self.host, self.port, 0, self.password)

    def command(self) -> list[str]:
        args = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> None:
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._wait_for_the_port()
        proc = subprocess.run(self.command(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigError(
                f"redis-server failed to start on port {self.port}: "
                f"{detail[-1] if detail else 'no output'}"
            )
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            alive = self._pid_alive()
            if not alive and time.monotonic() - started > 1.0:
                # the daemon exited at once (port in use, bad option): say why
                holder = who_listens(self.port)
                held = f" (the port is held by {holder.describe()})" if holder else ""
                raise ConfigError(
                    f"redis-server on port {self.port} exited at start: "
                    f"{self._last_log_line()}{held}"
                )
            # ours answering, not another server that holds the port (a clone started at
            # the same time): then ours exits at once and the loop above says why
            reply = _ping(self.host, self.port, self.password) if self._listening() else None
            if reply and not reply.startswith("-LOADING"):
                return
            time.sleep(0.02)
        raise UnreachableError(
            f"redis-server on port {self.port} did not answer within {timeout:.0f}s",
            hint=f"see {self.logfile}",
        )

    def _wait_for_the_port(self) -> None:
        """A restart on the port a killed server held: wait (briefly) until the port can be
        bound, so that whatever still held it as the old process died has let it go. A port
        another process listens on is not waited for: the start reports it at once."""
        deadline = time.monotonic() + PORT_RELEASE_WAIT
        while (
            port_in_use(self.port, self.host)
            and who_listens(self.port) is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)

    def _pid_alive(self) -> bool:
        pid = self.pid()
        return pid is not None and process_alive(pid)

    def _listening(self) -> bool:
        """Our process is alive and (as far as /proc tells) holds the port's listener."""
        pid = self.pid()
        return pid is not None and process_alive(pid) and listens(pid, self.port) is not False

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.logfile.read_text().splitlines() if line.strip()]
        except OSError:
            return "no log written"
        return lines[-1].split(" * ")[-1].split(" # ")[-1].strip() if lines else "empty log"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        """Our redis-server runs and answers on our port."""
        return self._listening() and _ping(self.host, self.port, self.password) is not None

    def stop(self, timeout: float = 10.0, *, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        self.stop(sig=signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
