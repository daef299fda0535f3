"""Connections to PostgreSQL (asyncpg), with operator-facing errors and timeouts.

Every connection carries a ``statement_timeout`` and a ``lock_timeout`` (:class:`PgTimeouts`,
sent as server settings when it opens), and a client-side ``command_timeout`` a little
longer, so no call waits forever: not on a row another session holds, not on a server that
stopped answering. Its ``application_name`` says it is echoes-ops (seen by the other side's
``pg_stat_activity``).

asyncpg is imported here and nowhere in the CLI, so ``echoes-ops --help`` never loads it.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg

from echoes_ops.config import PgTimeouts, redact_url
from echoes_ops.errors import PermissionDeniedError, PostgresError, PostgresUnreachableError

CONNECT_TIMEOUT = 5.0
POSTGRES_SCHEMES = ("postgres", "postgresql")
APPLICATION_NAME: Final = "echoes-ops"
CLIENT_GRACE: Final = 2.0  # the client gives up this long after the server should have


DEFAULT_TIMEOUTS: Final = PgTimeouts()


def command_timeout(timeouts: PgTimeouts) -> float:
    """The client's own limit: a little after the server should have cancelled."""
    return max(timeouts.statement, timeouts.lock) + CLIENT_GRACE


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


async def connect_postgres(
    dsn: str,
    *,
    timeouts: PgTimeouts = DEFAULT_TIMEOUTS,
    application_name: str = APPLICATION_NAME,
) -> Any:
    """An asyncpg connection with ``timeouts`` applied; failures become one-line
    :class:`PostgresError`."""
    target = target_of(dsn)
    if target is None:
        # Not echoed back: a malformed URL may hide a password where redact_url cannot see it.
        raise PostgresError(
            "the PostgreSQL DSN is not a postgresql:// URL",
            hint="check DATABASE_URL, e.g. postgresql://user@host:5432/dbname",
        )
    where = f"{target} ({redact_url(dsn)})"
    try:
        return await asyncpg.connect(
            dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=command_timeout(timeouts),
            server_settings={**timeouts.server_settings(), "application_name": application_name},
        )
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


def describe_failure(exc: BaseException, where: str, timeouts: PgTimeouts) -> str:
    """One line for a PostgreSQL failure, saying which timeout ran out when one did."""
    if isinstance(exc, asyncpg.LockNotAvailableError):
        return (
            f"PostgreSQL at {where}: gave up waiting for a lock after {timeouts.lock:g}s "
            "(lock_timeout): another session holds it"
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        return (
            f"PostgreSQL at {where}: statement cancelled after {timeouts.statement:g}s "
            "(statement_timeout)"
        )
    if isinstance(exc, TimeoutError):
        return f"PostgreSQL at {where} did not answer within {command_timeout(timeouts):g}s"
    return f"PostgreSQL at {where} failed: {exc}".splitlines()[0]


@asynccontextmanager
async def open_postgres(dsn: str, *, timeouts: PgTimeouts = DEFAULT_TIMEOUTS) -> AsyncIterator[Any]:
    """Connect; inside the block, PostgreSQL failures (a timeout included) become
    :class:`PostgresError`."""
    conn = await connect_postgres(dsn, timeouts=timeouts)
    where = target_of(dsn) or "?"
    try:
        yield conn
    except asyncpg.InsufficientPrivilegeError as exc:
        raise PermissionDeniedError(
            f"PostgreSQL at {where}: {exc}".splitlines()[0],
            hint="grant this login role an echoes_ops_* role: see echoes-ops acl postgres",
        ) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise PostgresError(describe_failure(exc, where, timeouts)) from exc
    finally:
        await conn.close(timeout=CONNECT_TIMEOUT)
