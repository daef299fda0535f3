"""What the live tail yields (messages and gaps), its constants and its argument error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from echoes_ops.contract import keys
from echoes_ops.contract.envelopes import Envelope
from echoes_ops.errors import ExitCode, OpsError

# The four channel families the game publishes on.
DEFAULT_CHANNELS: tuple[str, ...] = (
    keys.BROADCAST_CHANNEL,
    keys.LOCATION_CHANNEL_PATTERN,
    keys.PLAYER_CHANNEL_PATTERN,
    keys.WORKERS_CHANNEL,
)
UNDECODABLE = "undecodable"
SUMMARY_MAX = 200
MAX_CHANNEL_LENGTH = 1024
_GLOB = re.compile(r"[*?\[]")
_BAD_CHANNEL = re.compile(r"[\s\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


class TailArgumentError(OpsError):
    """A channel, pattern or filter value the operator got wrong."""

    exit_code = ExitCode.USAGE


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailMessage:
    """One received message. ``envelope`` is None when it did not decode (then ``raw``
    holds its text and ``error`` why)."""

    received_at: float
    channel: str
    pattern: str | None
    envelope: Envelope | None
    summary: str
    raw: str | None = None
    error: str | None = None
    latency: float | None = None  # seconds from the envelope's sent_at to receipt

    @property
    def type(self) -> str:
        return self.envelope.type if self.envelope is not None else UNDECODABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "message",
            "received_at": self.received_at,
            "channel": self.channel,
            "pattern": self.pattern,
            "type": self.type,
            "summary": self.summary,
            "latency_ms": round(self.latency * 1000, 3) if self.latency is not None else None,
            "message": self.envelope.to_dict() if self.envelope is not None else None,
            "raw": self.raw,
            "error": self.error,
        }


@dataclass(frozen=True)
class TailGap:
    """The connection was lost and is back: messages published in between are gone."""

    disconnected_at: float
    reconnected_at: float
    error: str
    attempts: int = 1  # connection attempts it took, the successful one included

    @property
    def duration(self) -> float:
        return max(0.0, self.reconnected_at - self.disconnected_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "gap",
            "disconnected_at": self.disconnected_at,
            "reconnected_at": self.reconnected_at,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "attempts": self.attempts,
        }


TailEvent = TailMessage | TailGap
