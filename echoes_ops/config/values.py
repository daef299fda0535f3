"""Setting values as words: booleans, bounded whole numbers, positive seconds (one reading for
settings, flags, env files and worker meta)."""

from __future__ import annotations

import math
from typing import Any

from echoes_ops.errors import ConfigError

# The words read as true and false, everywhere (settings, flags, env files, worker meta).
TRUE_WORDS: frozenset[str] = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS: frozenset[str] = frozenset({"false", "0", "no", "off"})


def parse_bool(text: str | None) -> bool | None:
    """``text`` as a bool (any of :data:`TRUE_WORDS` / :data:`FALSE_WORDS`, any case,
    surrounding blanks ignored); None when absent or not one of them."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value)
    if not text.strip():
        return False  # an empty setting means off
    parsed = parse_bool(text)
    if parsed is None:
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return parsed


def as_int(name: str, value: Any, *, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def as_float(name: str, value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return number
