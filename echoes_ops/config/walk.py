"""The settings that keep a command's walks and CPU out of the game's way (issue #16,
docs/design.md decision 11): the walks' duty cycle, the CLI's CPU priority and the cluster
walks' CPU gate. Read like every other setting (flags > env > config file > defaults) by
:class:`echoes_ops.config.Settings`; the client layer gets them through ``RedisTarget``."""

from __future__ import annotations

from typing import Any, Final

from echoes_ops.errors import ConfigError

DEFAULT_WALK_DUTY: Final = 0.5  # a walk's share of the server's time while the game uses it
DEFAULT_NICE: Final = 10  # the CPU priority a command lowers itself to before it opens Redis
IDLE_NICE: Final = "idle"  # the nice setting that asks for SCHED_IDLE instead
DEFAULT_STEP_GATE: Final = "off"


def as_walk_duty(name: str, value: Any) -> float:
    """A duty cycle: above 0, at most 1 (1 = never pace)."""
    raw = str(value).strip()
    if not raw:
        return DEFAULT_WALK_DUTY
    try:
        duty = float(raw)
    except ValueError:
        duty = -1.0
    if not 0 < duty <= 1:
        raise ConfigError(
            f"{name} must be a number above 0 and at most 1 (the walk's share of the "
            f"server's time; 1 = full speed), got {raw!r}"
        )
    return duty


def as_nice(name: str, value: Any) -> str:
    """A CPU priority: a nice level from 0 to 19 (0 leaves the process as it is) or ``idle``
    (the kernel's SCHED_IDLE class: the CPU only when nothing else wants it), as text."""
    raw = str(value).strip().lower()
    if not raw:
        return str(DEFAULT_NICE)
    if raw == IDLE_NICE:
        return raw
    if raw.isdigit() and 0 <= int(raw) <= 19:
        return str(int(raw))
    raise ConfigError(f"{name} must be a whole number from 0 to 19 or idle, got {raw!r}")


def as_step_gate(name: str, value: Any) -> str:
    """``off`` (no gate), ``auto`` (this process's CPUs) or a number of steps from 1."""
    raw = str(value).strip().lower()
    if raw in ("", DEFAULT_STEP_GATE):
        return DEFAULT_STEP_GATE
    if raw == "auto" or (raw.isdigit() and int(raw) >= 1):
        return raw
    raise ConfigError(
        f"{name} must be auto, off or a number of steps from 1 (how many nodes of a "
        f"cluster on this machine get a walk step at once), got {raw!r}"
    )
