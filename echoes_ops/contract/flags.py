"""Operational flags: the registry of known flags, their value encoding, where they live.

A flag's source of truth is the PostgreSQL table ``echoes_ops.flags`` (a trigger NOTIFYs
:data:`PG_CHANNEL` on every change); the deployment's env file holds it for restarts
(``NAME=value``); Redis holds a mirror in the hash :data:`keys.FLAGS_KEY` (field ``NAME``
with the value, plus ``NAME:version`` and ``NAME:updated_by``) and running workers hear a
``config_changed`` message on ``game:workers`` (fields ``flag``, ``value``, ``version``).

Values are stored as strings; booleans as ``"true"``/``"false"``. A flag's *version* is
the time of its last change in PostgreSQL (``updated_at``) as integer microseconds since
the epoch, written as a decimal string: the same number reaches workers through NOTIFY,
the Redis message and the mirror, so a worker can tell which change it applied and ignore
an older one arriving late.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from echoes_ops.config import parse_bool
from echoes_ops.errors import BadValueError, DecodeError, NotFoundError

# NOTIFY channel of the trigger on echoes_ops.flags (migration 1; kept equal by a test).
PG_CHANNEL: Final = "echoes_ops_flags"

REDIS_ENABLED: Final = "REDIS_ENABLED"


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: Literal["bool"]
    default: str
    description: str
    confirm: bool = False  # ask before changing it

    def parse(self, text: object) -> str:
        """The canonical stored form of ``text``; :class:`BadValueError` (a ConfigError,
        exit 2 when given on the command line) if it is not one."""
        parsed = parse_bool(str(text))
        if parsed is not None:
            return "true" if parsed else "false"
        raise BadValueError(f"{self.name} is a boolean flag: use true or false, not {text!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "description": self.description,
        }


KNOWN_FLAGS: Final[Mapping[str, FlagSpec]] = {
    REDIS_ENABLED: FlagSpec(
        name=REDIS_ENABLED,
        kind="bool",
        default="true",
        description=(
            "Workers use Redis (sessions, presence, caches, pub/sub); false = fallback: "
            "PostgreSQL reads and in-process connections only"
        ),
        confirm=True,
    ),
}


def spec(name: str) -> FlagSpec:
    """The known flag ``name`` (case-insensitive); :class:`NotFoundError` otherwise."""
    found = KNOWN_FLAGS.get(str(name).strip().upper())
    if found is None:
        raise NotFoundError(
            f"unknown flag {name!r}", hint=f"known flags: {', '.join(sorted(KNOWN_FLAGS))}"
        )
    return found


def as_bool(value: str | None) -> bool | None:
    """``"true"``/``"false"`` (any accepted spelling) as a bool; None when absent or not
    a boolean."""
    return parse_bool(value)


def version_from_epoch(epoch: object) -> str:
    """Integer microseconds of an epoch-seconds value (str, Decimal, int), exactly."""
    try:
        number = Decimal(str(epoch))
    except InvalidOperation:
        raise DecodeError(f"flag version is not a number: {epoch!r}") from None
    if not number.is_finite():
        raise DecodeError(f"flag version is not a number: {epoch!r}")
    return str(int(number.scaleb(6).to_integral_value()))


def version_number(version: str | None) -> int:
    """A version string as an int for ordering (absent = 0)."""
    if not version:
        return 0
    try:
        return int(version)
    except ValueError:
        return 0


# -- the Redis mirror ---------------------------------------------------------------------


def mirror_version_field(name: str) -> str:
    return f"{name}:version"


def mirror_updated_by_field(name: str) -> str:
    return f"{name}:updated_by"


def mirror_fields(name: str, value: str, version: str, updated_by: str) -> dict[str, str]:
    """The hash fields written to :data:`keys.FLAGS_KEY` for one flag."""
    return {
        name: value,
        mirror_version_field(name): version,
        mirror_updated_by_field(name): updated_by,
    }


# -- NOTIFY payloads ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagUpdate:
    """A flag value as a worker hears it, with where it came from."""

    name: str
    value: str
    version: str | None
    updated_by: str | None = None
    source: str = "postgresql"  # "postgresql", "redis", "default"


def decode_notify(payload: str) -> FlagUpdate:
    """The trigger's JSON payload (name, value, updated_by, updated_at epoch seconds)."""
    try:
        body = json.loads(payload, parse_float=Decimal)
    except (json.JSONDecodeError, TypeError):
        raise DecodeError("flag notification is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise DecodeError("flag notification has no name")
    value = body.get("value")
    if not isinstance(value, str):
        raise DecodeError(f"flag notification for {body['name']} has no value")
    at = body.get("updated_at")
    updated_by = body.get("updated_by")
    return FlagUpdate(
        name=body["name"],
        value=value,
        version=version_from_epoch(at) if at is not None else None,
        updated_by=updated_by if isinstance(updated_by, str) else None,
        source="postgresql",
    )


# -- what a worker reports in its meta hash (worker:<wid>:meta) ---------------------------
META_MODE: Final = "mode"  # "redis" or "fallback"
META_REDIS_ENABLED: Final = "redis_enabled"  # the REDIS_ENABLED value the worker applied
META_FLAGS_VERSION: Final = "flags_version"  # the version of that value
META_FLAGS_SOURCE: Final = "flags_source"  # where it came from: postgresql, redis, default
META_FLAGS_APPLIED_AT: Final = "flags_applied_at"  # epoch seconds of the last change
MODE_REDIS: Final = "redis"
MODE_FALLBACK: Final = "fallback"
# other spellings of the fallback mode a game's own workers may report
FALLBACK_MODES: Final = frozenset({MODE_FALLBACK, "postgres", "postgresql", "local", "disabled"})


def mode_means_enabled(mode: str | None) -> bool | None:
    """What a worker's reported mode says about REDIS_ENABLED (None: cannot tell)."""
    word = (mode or "").strip().lower()
    if word == MODE_REDIS:
        return True
    if word in FALLBACK_MODES:
        return False
    return None
