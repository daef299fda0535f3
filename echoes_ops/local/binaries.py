"""Finding the server binaries the local services and the test fixtures run."""

from __future__ import annotations

import shutil
from pathlib import Path

from echoes_ops.errors import ConfigError


def find_redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise ConfigError(
            "redis-server is not installed",
            hint="install it: sudo apt-get install redis-server (Debian/Ubuntu)",
        )
    return found


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
