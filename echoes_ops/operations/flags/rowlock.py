"""Taking a flag's row in PostgreSQL (``SELECT ... FOR UPDATE``), and naming who holds it
when the wait runs out.

Another transaction holding the row (an operator's ``psql`` left open, a stuck deploy)
must not make the emergency switch hang: the wait is bounded by the connection's
``lock_timeout`` (``ECHOES_OPS_FLAGS_TIMEOUT``). While it waits, a second short-lived
connection asks PostgreSQL which backends block ours (``pg_blocking_pids``) and for how
long they have been in their transaction (``pg_stat_activity``), so the error names them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Final

from echoes_ops.client.postgres import connect_postgres, target_of
from echoes_ops.config import PgTimeouts
from echoes_ops.errors import BusyError, OpsError

LOCK_ROW: Final = "SELECT value FROM echoes_ops.flags WHERE name = $1 FOR UPDATE"
PROBE_AFTER: Final = 0.2  # seconds of waiting before asking who blocks (at most half the wait)
PROBE_TIMEOUTS: Final = PgTimeouts(statement=2.0, lock=1.0)
_BLOCKERS: Final = (
    "SELECT pid, application_name, usename, state, "
    "extract(epoch FROM now() - xact_start) AS xact_age "
    "FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids($1)) ORDER BY xact_start"
)


@dataclass(frozen=True)
class Blocker:
    """A backend holding what we wait for (fields PostgreSQL hides from a role without
    pg_read_all_stats are None)."""

    pid: int
    application_name: str | None
    user: str | None
    state: str | None
    held_s: float | None  # how long its transaction has been open (it holds the row)

    def describe(self) -> str:
        app = self.application_name if self.application_name else "?"
        parts = [f"pid {self.pid}", f"application {app!r}"]
        if self.user:
            parts.append(f"user {self.user}")
        if self.state:
            parts.append(self.state)
        if self.held_s is not None:
            parts.append(f"its transaction open for {self.held_s:.0f}s")
        else:
            parts.append("for how long: hidden (needs pg_read_all_stats)")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlagLockedError(BusyError):
    """The flag's row stayed locked by another session for the whole wait: nothing changed."""

    def __init__(
        self, name: str, where: str, waited: float, blockers: list[Blocker], probe_error: str
    ) -> None:
        if blockers:
            who = "; ".join(b.describe() for b in blockers)
        else:
            who = f"holder not identified ({probe_error or 'it let go as we asked'})"
        first = f"pg_terminate_backend({blockers[0].pid})" if blockers else "pg_terminate_backend"
        super().__init__(
            f"{name} is locked in PostgreSQL at {where} by another session ({who}); gave up "
            f"after {waited:g}s (lock_timeout), nothing changed",
            hint=f"end that transaction (or SELECT {first}), then retry; the wait is "
            "ECHOES_OPS_FLAGS_TIMEOUT",
        )
        self.blockers = blockers


async def blockers_of(dsn: str, pid: int) -> tuple[list[Blocker], str]:
    """The backends blocking ``pid``, read on a connection of our own; ``([], why)`` when
    they cannot be read."""
    import asyncpg

    failures = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
    try:
        conn = await connect_postgres(dsn, timeouts=PROBE_TIMEOUTS)
    except OpsError as exc:
        return [], str(exc)
    try:
        rows = await conn.fetch(_BLOCKERS, pid)
    except failures as exc:
        return [], f"cannot read pg_stat_activity: {exc}".splitlines()[0]
    finally:
        with contextlib.suppress(*failures):
            await conn.close(timeout=PROBE_TIMEOUTS.statement)
    return [
        Blocker(
            pid=int(row["pid"]),
            application_name=row["application_name"],
            user=row["usename"],
            state=row["state"],
            held_s=None if row["xact_age"] is None else float(row["xact_age"]),
        )
        for row in rows
    ], ""


async def lock_flag_row(dsn: str, conn: Any, name: str, timeouts: PgTimeouts) -> Any:
    """``SELECT value ... FOR UPDATE`` of ``name`` in the open transaction of ``conn``: the
    row (None when the flag was never set). Raises :class:`FlagLockedError`, naming the
    blocking backends, when another session holds the row past ``timeouts.lock``."""
    import asyncpg

    waiting = asyncio.ensure_future(conn.fetchrow(LOCK_ROW, name))
    blockers: list[Blocker] = []
    probe_error = ""
    try:
        done, _ = await asyncio.wait({waiting}, timeout=min(PROBE_AFTER, timeouts.lock / 2))
        if not done:
            blockers, probe_error = await blockers_of(dsn, conn.get_server_pid())
        return await waiting
    except asyncpg.LockNotAvailableError:
        where = target_of(dsn) or "?"
        raise FlagLockedError(name, where, timeouts.lock, blockers, probe_error) from None
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(
                asyncio.CancelledError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError
            ):
                await waiting  # its own error, if any, is not ours to report
