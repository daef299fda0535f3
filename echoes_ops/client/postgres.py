"""Connections to PostgreSQL (asyncpg), with operator-facing errors.

asyncpg is imported here and nowhere in the CLI, so ``echoes-ops --help`` never loads it.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from echoes_ops.config import redact_url
from echoes_ops.errors import PostgresError, PostgresUnreachableError

CONNECT_TIMEOUT = 5.0
POSTGRES_SCHEMES = ("postgres", "postgresql")


def target_of(dsn: str) -> str | None:
    """``host:port`` of a postgresql:// URL (libpq's defaults filled in), or None if not one."""
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in POSTGRES_SCHEMES:
            return None
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect_postgres(dsn: str) -> Any:
    """An asyncpg connection; failures become one-line :class:`PostgresError`."""
    target = target_of(dsn)
    if target is None:
        # Not echoed back: a malformed URL may hide a password where redact_url cannot see it.
        raise PostgresError(
            "the PostgreSQL DSN is not a postgresql:// URL",
            hint="check DATABASE_URL, e.g. postgresql://user@host:5432/dbname",
        )
    where = f"{target} ({redact_url(dsn)})"
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise PostgresUnreachableError(
            f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT:.0f}s"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            reason = "connection refused"
        else:
            reason = exc.strerror or str(exc) or type(exc).__name__
        raise PostgresUnreachableError(
            f"cannot connect to PostgreSQL at {where}: {reason}".splitlines()[0]
        ) from None
    except asyncpg.PostgresError as exc:
        raise PostgresError(
            f"PostgreSQL at {where} refused the connection: {exc}".splitlines()[0]
        ) from None
    except (asyncpg.InterfaceError, ValueError) as exc:
        raise PostgresError(
            f"cannot connect to PostgreSQL at {where}: {exc}".splitlines()[0],
            hint="check DATABASE_URL",
        ) from None


@asynccontextmanager
async def open_postgres(dsn: str) -> AsyncIterator[Any]:
    """Connect; inside the block, PostgreSQL failures become :class:`PostgresError`."""
    conn = await connect_postgres(dsn)
    where = target_of(dsn) or "?"
    try:
        yield conn
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise PostgresError(f"PostgreSQL at {where} failed: {exc}".splitlines()[0]) from exc
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)
