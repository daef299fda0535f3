"""Finding the server binaries the local services and the test fixtures run."""

from __future__ import annotations

import shutil
from pathlib import Path

from echoes_ops.errors import ConfigError


def _find(program: str, package: str, why: str = "") -> str:
    found = shutil.which(program) or (
        f"/usr/bin/{program}" if Path(f"/usr/bin/{program}").exists() else None
    )
    if not found:
        raise ConfigError(
            f"{program} is not installed{why}",
            hint=f"install it: sudo apt-get install {package} (Debian/Ubuntu)",
        )
    return found


def find_redis_server() -> str:
    return _find("redis-server", "redis-server")


def find_redis_cli() -> str:
    return _find("redis-cli", "redis-tools", " (it creates the local cluster)")


def find_postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/<N>/bin, or the folder of pg_ctl on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise ConfigError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed",
        hint="install them: sudo apt-get install postgresql (Debian/Ubuntu)",
    )
