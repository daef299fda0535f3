"""Pub/sub message envelopes, exactly the plan's shapes.

``global_broadcast`` on ``game:broadcast``; ``location_update`` on ``location:<loc>`` (with
``location_id``, ``exclude_player_id`` and ``payload``); ``personal_message`` on
``player:<id>`` (with ``player_id`` and ``payload``); ``worker_join``, ``worker_leave`` and
``config_changed`` on ``game:workers``. Fields of ours are only ever added (``sent_at``,
epoch seconds at publish; ``msg_id``), never renamed or removed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from echoes_ops.contract import keys
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import DecodeError

GLOBAL_BROADCAST = "global_broadcast"
LOCATION_UPDATE = "location_update"
PERSONAL_MESSAGE = "personal_message"
WORKER_JOIN = "worker_join"
WORKER_LEAVE = "worker_leave"
CONFIG_CHANGED = "config_changed"
WORKER_EVENTS = frozenset({WORKER_JOIN, WORKER_LEAVE, CONFIG_CHANGED})
ENVELOPE_TYPES = frozenset(
    {GLOBAL_BROADCAST, LOCATION_UPDATE, PERSONAL_MESSAGE, WORKER_JOIN, WORKER_LEAVE, CONFIG_CHANGED}
)
# Payload types the game and echoes-ops are known to publish (docs/contract.md); the game
# may add others, so an unknown one is worth a warning, not a refusal.
KNOWN_PAYLOAD_TYPES = frozenset(
    {"server_announcement", "location_update", "combat_update", "kicked"}
)

# Largest message an operator may publish; larger ones are refused before publishing.
MAX_MESSAGE_BYTES = 64 * 1024


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_msg_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Envelope:
    """A decoded or to-be-published message."""

    type: str
    channel: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    location_id: str | None = None
    exclude_player_id: int | None = None
    player_id: int | None = None
    worker_id: str | None = None
    timestamp: str | None = None
    sent_at: float | None = None
    msg_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        if self.type == LOCATION_UPDATE:
            body["location_id"] = self.location_id
            body["exclude_player_id"] = self.exclude_player_id
            body["payload"] = dict(self.payload)
        elif self.type == PERSONAL_MESSAGE:
            body["player_id"] = self.player_id
            body["payload"] = dict(self.payload)
        elif self.type == GLOBAL_BROADCAST:
            body["payload"] = dict(self.payload)
        else:
            if self.worker_id is not None:
                body["worker_id"] = self.worker_id
            if self.payload:
                body["payload"] = dict(self.payload)
        if self.timestamp is not None:
            body["timestamp"] = self.timestamp
        for name, value in self.extra.items():
            body.setdefault(name, value)
        if self.sent_at is not None:
            body["sent_at"] = self.sent_at
        if self.msg_id is not None:
            body["msg_id"] = self.msg_id
        return body

    def to_json(self) -> str:
        try:
            text = json.dumps(
                self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
        except ValueError:
            raise DecodeError("message holds a non-finite number (NaN or infinity)") from None
        if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise DecodeError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
        return text


def global_broadcast(
    payload: Mapping[str, Any], *, stamp: bool = True, msg_id: str | None = None
) -> Envelope:
    return Envelope(
        type=GLOBAL_BROADCAST,
        channel=keys.BROADCAST_CHANNEL,
        payload=payload,
        sent_at=time.time() if stamp else None,
        msg_id=msg_id,
    )


def location_update(
    location_id: str,
    payload: Mapping[str, Any],
    *,
    exclude_player_id: int | None = None,
    stamp: bool = True,
    msg_id: str | None = None,
) -> Envelope:
    return Envelope(
        type=LOCATION_UPDATE,
        channel=keys.location_channel(location_id),
        payload=payload,
        location_id=location_id,
        exclude_player_id=(
            check_character_id(exclude_player_id) if exclude_player_id is not None else None
        ),
        sent_at=time.time() if stamp else None,
        msg_id=msg_id,
    )


def personal_message(
    player_id: int, payload: Mapping[str, Any], *, stamp: bool = True, msg_id: str | None = None
) -> Envelope:
    pid = check_character_id(player_id)
    return Envelope(
        type=PERSONAL_MESSAGE,
        channel=keys.player_channel(pid),
        payload=payload,
        player_id=pid,
        sent_at=time.time() if stamp else None,
        msg_id=msg_id,
    )


def worker_event(
    kind: Literal["worker_join", "worker_leave", "config_changed"],
    worker_id: str | None,
    **extra: Any,
) -> Envelope:
    return Envelope(
        type=kind,
        channel=keys.WORKERS_CHANNEL,
        worker_id=check_name(worker_id, "worker id") if worker_id is not None else None,
        timestamp=iso_now(),
        sent_at=time.time(),
        extra=extra,
    )


_KNOWN = {
    "type",
    "payload",
    "location_id",
    "exclude_player_id",
    "player_id",
    "worker_id",
    "timestamp",
    "sent_at",
    "msg_id",
}


def decode_message(channel: str | bytes, data: str | bytes) -> Envelope:
    """Decode a received message; raise :class:`DecodeError` when it is not an envelope."""
    if isinstance(channel, bytes):
        channel = channel.decode("utf-8", "replace")
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DecodeError(f"message on {channel} is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise DecodeError(f"message on {channel} has no 'type'")
    payload = body.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise DecodeError(f"message on {channel} has a payload that is not an object")

    def _int(name: str) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise DecodeError(f"message on {channel}: {name} is not an integer")
        try:
            return int(value)
        except ValueError:
            raise DecodeError(f"message on {channel}: {name} is not an integer") from None

    sent_at = body.get("sent_at")
    return Envelope(
        type=body["type"],
        channel=channel,
        payload=payload,
        location_id=body.get("location_id"),
        exclude_player_id=_int("exclude_player_id"),
        player_id=_int("player_id"),
        worker_id=body.get("worker_id"),
        timestamp=body.get("timestamp"),
        sent_at=float(sent_at) if isinstance(sent_at, int | float) else None,
        msg_id=body.get("msg_id") if isinstance(body.get("msg_id"), str) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )
