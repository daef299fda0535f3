"""Error types and the exit codes they map to.

Every failure an operator can cause or meet (bad input, unreachable server, wrong password)
is an :class:`OpsError` with a one-line message and a documented exit code. The CLI prints
``str(error)`` on stderr and exits with ``error.exit_code``; nothing else reaches the user.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in docs/cli.md."""

    OK = 0
    PROBLEMS_FOUND = 1  # validate found errors, doctor found failures, drift found
    USAGE = 2  # bad flags or arguments (also click's own code)
    CONFIG = 3  # invalid settings, config file or gamedata
    UNREACHABLE = 4  # connection refused, timeout, DNS, server loading, TLS handshake
    AUTH = 5  # wrong password or unknown user
    PERMISSION = 6  # ACL NOPERM, read-only replica
    REFUSED = 7  # the command refused to act (memory headroom, live owner, not found)
    BUSY = 8  # another run holds the lock; nothing done
    POSTGRES = 9  # PostgreSQL unreachable or failed
    REDIS = 10  # an unexpected Redis error reply
    LOST = 11  # written data was gone when verified (evicted, deleted)
    INTERRUPTED = 130  # Ctrl-C


class OpsError(Exception):
    """An error with an operator-facing one-line message."""

    exit_code: ExitCode = ExitCode.REDIS

    def __init__(
        self, message: str, *, hint: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail  # what the audit record keeps about the outcome

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(OpsError):
    exit_code = ExitCode.CONFIG


class BadValueError(ConfigError, ValueError):
    """A value given on the command line (or in the dashboard) that the command cannot use:
    a usage error (exit 2), whereas a bad value in a setting or file is a ConfigError (3)."""

    exit_code = ExitCode.USAGE


class InvalidIdError(ConfigError, ValueError):
    """An id that would break a key name or a SCAN pattern."""


class DecodeError(OpsError, ValueError):
    """A stored value or message that does not decode under the contract."""

    exit_code = ExitCode.CONFIG


class GamedataError(ConfigError):
    """Gamedata failed validation; ``problems`` holds every finding."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class UnreachableError(OpsError):
    exit_code = ExitCode.UNREACHABLE


class AuthError(OpsError):
    exit_code = ExitCode.AUTH


class PermissionDeniedError(OpsError):
    exit_code = ExitCode.PERMISSION


class RefusedError(OpsError):
    exit_code = ExitCode.REFUSED


class NotFoundError(RefusedError):
    pass


class BusyError(OpsError):
    exit_code = ExitCode.BUSY


class PostgresError(OpsError):
    exit_code = ExitCode.POSTGRES


class PostgresUnreachableError(PostgresError):
    """PostgreSQL cannot be reached (refused, timed out, DNS): nothing was asked of it."""


class RedisCommandError(OpsError):
    exit_code = ExitCode.REDIS


class DataLostError(OpsError):
    """Data a command wrote (and saw committed) was gone when it verified it."""

    exit_code = ExitCode.LOST


class Interrupted(OpsError):
    """A command stopped at a step boundary on SIGINT/SIGTERM; the message is the true
    outcome (what was written, what was not)."""

    exit_code = ExitCode.INTERRUPTED
