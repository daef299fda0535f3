"""A private PostgreSQL cluster: used by ``echoes-ops local`` and by the test fixtures.

The folder given as ``data_dir`` holds the cluster (``pgdata/``), the server log
(``postgres.log``) and, when initdb fails, its output (``initdb.log``). The server listens on
one loopback address only and trusts every connection it accepts (loopback TCP and its own unix
socket, which lives inside ``pgdata/``), so it is for local and test use only.

PostgreSQL refuses to run as root. When this process is root, initdb, pg_ctl and the server run
as the ``postgres`` system user and the folder is handed over to it. If that user cannot reach
the requested folder (a project under ``/root``, a pytest tmp dir of mode 700), the cluster goes
to ``/var/tmp/echoes-ops-pg/<hash of the requested path>/`` instead; ``actual_data_dir`` says
which folder is in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoes_ops.errors import ConfigError, UnreachableError
from echoes_ops.local.binaries import find_postgres_bindir
from echoes_ops.local.redis_server import free_port, process_alive

SYSTEM_USER = "postgres"
BOOTSTRAP_SUPERUSER = "postgres"
FALLBACK_ROOT = Path("/var/tmp/echoes-ops-pg")
CONF_INCLUDE = "echoes-ops.conf"
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
_PORT_TAKEN = b"Address already in use"
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class _RunAs:
    """The identity PostgreSQL's programs run under: this process, or the postgres user."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    switch: bool

    @classmethod
    def current(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid(), (), switch=False)
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ConfigError(
                f"PostgreSQL cannot run as root and there is no '{SYSTEM_USER}' system user",
                hint="run as a non-root user, or install the postgresql package that creates it",
            ) from None
        groups = tuple(os.getgrouplist(SYSTEM_USER, entry.pw_gid))
        return cls(entry.pw_uid, entry.pw_gid, groups, switch=True)

    def popen_kwargs(self) -> dict[str, Any]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def _clean_env() -> dict[str, str]:
    """The environment for PostgreSQL's programs, without the caller's PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")
    return env


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pid_alive(pid: int) -> bool:
    return process_alive(pid)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _log_size(logfile: Path) -> int:
    try:
        return logfile.stat().st_size
    except OSError:
        return 0


def _port_taken(logfile: Path, since: int = 0) -> bool:
    """Whether the server's last start failed because its port was taken."""
    try:
        with logfile.open("rb") as log:
            log.seek(since)
            return _PORT_TAKEN in log.read()
    except OSError:
        return False


def _last_problem(logfile: Path, since: int = 0) -> str | None:
    """The last FATAL/PANIC/ERROR line written to a PostgreSQL log after byte ``since``."""
    try:
        with logfile.open("rb") as log:
            log.seek(since)
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        for marker in ("FATAL:", "PANIC:", "ERROR:"):
            if marker in line:
                return line.split(marker, 1)[1].strip()
    return None


@dataclass
class PostgresServer:
    """One PostgreSQL cluster bound to a loopback address, cluster and logs in ``data_dir``."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    user: str = "echoes"
    database: str = "echoes"
    _actual_dir: Path = field(init=False, repr=False)
    _auto_port: bool = field(init=False, repr=False, default=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().absolute()
        if not _is_loopback(self.host):
            raise ConfigError(
                f"the local PostgreSQL server must listen on a loopback address, not {self.host}",
                hint="it trusts every connection; use 127.0.0.1 or ::1",
            )
        self._actual_dir = self._choose_dir()
        if not self.port:
            self._auto_port = True
            self.port = self.running_port() or free_port(self.host)

    # -- where things are -------------------------------------------------------------------

    @property
    def actual_data_dir(self) -> Path:
        """The folder in use: ``data_dir``, or its fallback under /var/tmp when running as root."""
        return self._actual_dir

    @property
    def pgdata(self) -> Path:
        return self._actual_dir / "pgdata"

    @property
    def logfile(self) -> Path:
        return self._actual_dir / "postgres.log"

    @property
    def initdb_logfile(self) -> Path:
        return self._actual_dir / "initdb.log"

    @property
    def pidfile(self) -> Path:
        return self.pgdata / "postmaster.pid"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{self.user}@{host}:{self.port}/{self.database}"

    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _choose_dir(self) -> Path:
        if os.geteuid() != 0:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        fallback = FALLBACK_ROOT / digest
        if (fallback / "pgdata" / "PG_VERSION").exists():
            return fallback  # an earlier run already settled on the fallback
        if self._postgres_can_reach(self.data_dir):
            return self.data_dir
        return fallback

    @staticmethod
    def _postgres_can_reach(path: Path) -> bool:
        """Whether the postgres user can traverse to ``path`` (we create what is missing)."""
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        test = shutil.which("test") or "/usr/bin/test"
        proc = subprocess.run(
            [test, "-x", str(ancestor)],
            check=False,
            capture_output=True,
            cwd="/",
            **_RunAs.current().popen_kwargs(),
        )
        return proc.returncode == 0

    # -- running PostgreSQL's programs ------------------------------------------------------

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        binary = find_postgres_bindir() / program
        return subprocess.run(
            [str(binary), *args],
            check=False,
            capture_output=True,
            text=True,
            cwd="/",
            env=_clean_env(),
            **_RunAs.current().popen_kwargs(),
        )

    def _prepare_dir(self) -> None:
        run_as = _RunAs.current()
        fallback = self._actual_dir != self.data_dir
        if fallback:
            FALLBACK_ROOT.mkdir(parents=True, exist_ok=True)
            FALLBACK_ROOT.chmod(0o755)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                (self.data_dir / "POSTGRES_DATA_DIR").write_text(f"{self._actual_dir}\n")
        self._actual_dir.mkdir(parents=True, exist_ok=True)
        if run_as.switch:
            # Hand over the folder and what we keep in it; nothing else in it is touched.
            os.chown(self._actual_dir, run_as.uid, run_as.gid)
            for path in (self.pgdata, self.logfile):
                if path.exists() and path.stat().st_uid != run_as.uid:
                    _chown_tree(path, run_as.uid, run_as.gid)
        self._actual_dir.chmod(0o700)

    def _initdb(self) -> None:
        proc = self._run(
            "initdb",
            "--pgdata",
            str(self.pgdata),
            "--username",
            BOOTSTRAP_SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if proc.returncode != 0:
            self.initdb_logfile.write_text(proc.stdout + proc.stderr)
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            errors = [line for line in lines if "error:" in line]
            detail = (errors or lines or ["no output"])[-1]
            raise ConfigError(
                f"initdb failed for {self.pgdata}: {detail}",
                hint=f"see {self.initdb_logfile}",
            )
        # Trust loopback and the cluster's own socket only; nothing else may connect.
        (self.pgdata / "pg_hba.conf").write_text(
            "# written by echoes-ops: local/test cluster, trusted loopback only\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists '{CONF_INCLUDE}'\n")

    def _write_settings(self) -> None:
        socket_dir = str(self.pgdata)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            socket_dir = ""  # path too long for a unix socket: TCP only
        settings: dict[str, str | int] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": socket_dir,
            "unix_socket_permissions": "0700",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": 50,
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] ",
        }
        text = "# written by echoes-ops on every start; edits are overwritten\n" + "".join(
            f"{name} = {_conf_value(value)}\n" for name, value in settings.items()
        )
        path = self.pgdata / CONF_INCLUDE
        path.write_text(text)
        run_as = _RunAs.current()
        if run_as.switch:
            os.chown(path, run_as.uid, run_as.gid)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Create the cluster if needed, start it, and make sure the role and database exist."""
        if self.running():
            return
        running_port = self.running_port()
        if running_port is not None:
            self.port = running_port  # already up, on another port than we were told
        else:
            self._prepare_dir()
            if not self.initialized():
                self._initdb()
            self._start_server(timeout)
        self._ensure_role_and_database()

    def _start_server(self, timeout: float) -> None:
        attempts = _START_ATTEMPTS if self._auto_port else 1
        for attempt in range(attempts):
            self._write_settings()
            log_offset = _log_size(self.logfile)
            proc = self._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.pgdata),
                "--log",
                str(self.logfile),
                "--wait",
                "--timeout",
                str(max(1, round(timeout))),
                "--silent",
            )
            if proc.returncode == 0:
                return
            problem = _last_problem(self.logfile, log_offset)
            if _port_taken(self.logfile, log_offset):
                if attempt + 1 < attempts:
                    self.port = free_port(self.host)  # someone took the port we picked; retry
                    continue
                problem = f"port {self.port} is already in use"
            output = (proc.stderr or proc.stdout).strip()
            if "did not start in time" in output:
                raise UnreachableError(
                    f"PostgreSQL on {self.host}:{self.port} did not start within {timeout:.0f}s",
                    hint=f"see {self.logfile}",
                )
            detail = problem or (output.splitlines()[-1] if output else "no output")
            raise ConfigError(
                f"PostgreSQL failed to start on {self.host}:{self.port}: {detail}",
                hint=f"see {self.logfile}",
            )

    def _ensure_role_and_database(self) -> None:
        script = (
            "SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role') "
            "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec\n"
            "SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n"
        )
        psql = find_postgres_bindir() / "psql"
        proc = subprocess.run(
            [
                str(psql),
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                f"--set=role={self.user}",
                f"--set=db={self.database}",
                f"--host={self.host}",
                f"--port={self.port}",
                f"--username={BOOTSTRAP_SUPERUSER}",
                "--dbname=postgres",
            ],
            input=script,
            check=False,
            capture_output=True,
            text=True,
            cwd="/",
            env=_clean_env(),
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigError(
                f"could not create role {self.user!r} and database {self.database!r} on "
                f"{self.host}:{self.port}: {detail[-1] if detail else 'no output'}",
                hint=f"see {self.logfile}",
            )

    def _pidfile_lines(self) -> list[str]:
        try:
            return self.pidfile.read_text().splitlines()
        except OSError:
            return []

    def pid(self) -> int | None:
        lines = self._pidfile_lines()
        try:
            return int(lines[0])
        except (IndexError, ValueError):
            return None

    def running_port(self) -> int | None:
        """The port of a live postmaster for this cluster, from postmaster.pid."""
        lines = self._pidfile_lines()
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        return port if _pid_alive(pid) else None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 30, *, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast``); a no-op when it is not running."""
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            return
        proc = self._run(
            "pg_ctl",
            "stop",
            "--pgdata",
            str(self.pgdata),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(max(1, round(timeout))),
            "--silent",
        )
        if proc.returncode != 0 and _pid_alive(pid):
            output = (proc.stderr or proc.stdout).strip().splitlines()
            raise UnreachableError(
                f"PostgreSQL on {self.host}:{self.port} did not stop: "
                f"{output[-1] if output else 'no output'}",
                hint=f"see {self.logfile}",
            )

    def kill(self) -> None:
        """Stop abruptly (``pg_ctl stop -m immediate``): the next start runs crash recovery."""
        self.stop(mode="immediate")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete the cluster folder (and the fallback pointer file)."""
        self.stop()
        shutil.rmtree(self._actual_dir, ignore_errors=True)
        if self._actual_dir != self.data_dir:
            with contextlib.suppress(OSError):
                (self.data_dir / "POSTGRES_DATA_DIR").unlink()
