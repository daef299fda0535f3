"""One-line summaries of decoded messages, and the decoding of a received message."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from echoes_ops.contract import envelopes
from echoes_ops.contract.envelopes import Envelope, decode_message
from echoes_ops.errors import DecodeError
from echoes_ops.operations.tail.events import (
    _SPACES,
    SUMMARY_MAX,
    TailMessage,
)

# -- summaries ----------------------------------------------------------------------------


def _one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _compact(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


def _payload_text(payload: Mapping[str, Any]) -> str:
    """The human part of a payload: its message, else its data, else the rest of it."""
    data = payload.get("data")
    if isinstance(data, Mapping):
        message = data.get("message")
        if isinstance(message, str) and message.strip():
            return message
    message = payload.get("message")
    if isinstance(message, str) and message.strip():
        return message
    if isinstance(data, str):
        return data
    if data:
        return _compact(data)
    rest = {k: v for k, v in payload.items() if k not in ("type", "timestamp")}
    return _compact(rest) if rest else ""


def _joined(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def summarize(envelope: Envelope) -> str:
    """A one-line description of a decoded message, computed from the envelope alone."""
    payload = envelope.payload
    inner = payload.get("type") if isinstance(payload.get("type"), str) else None
    text = _payload_text(payload)
    kind = envelope.type
    if kind == envelopes.GLOBAL_BROADCAST:
        label = "announcement" if inner in (None, "server_announcement") else str(inner)
        line = f"{label}: {text}" if text else label
    elif kind == envelopes.LOCATION_UPDATE:
        where = envelope.location_id or envelope.channel
        what = text if inner in (None, envelopes.LOCATION_UPDATE) else _joined(str(inner), text)
        line = f"{where}: {what}"
        if envelope.exclude_player_id is not None:
            line += f" (exclude {envelope.exclude_player_id})"
    elif kind == envelopes.PERSONAL_MESSAGE:
        who = envelope.player_id if envelope.player_id is not None else "?"
        line = f"to {who}: {_joined(inner or '', text)}"
    elif kind in (envelopes.WORKER_JOIN, envelopes.WORKER_LEAVE):
        verb = "joined" if kind == envelopes.WORKER_JOIN else "left"
        line = f"{envelope.worker_id or '?'} {verb}"
        details = _extra_text(envelope)
        if details:
            line += f" ({details})"
    elif kind == envelopes.CONFIG_CHANGED:
        line = _joined("config changed", _extra_text(envelope) or text)
        if envelope.worker_id:
            line += f" (by {envelope.worker_id})"
    else:
        line = _joined(inner or "", text or _extra_text(envelope))
    return _one_line(line)


def _extra_text(envelope: Envelope) -> str:
    pairs = [f"{k}={v if isinstance(v, str) else _compact(v)}" for k, v in envelope.extra.items()]
    if envelope.type in envelopes.WORKER_EVENTS and envelope.payload:
        pairs.append(_compact(dict(envelope.payload)))
    return " ".join(pairs)


def summarize_undecodable(raw: str, error: str, channel: str = "") -> str:
    """``not JSON: <the start of the text>`` and the like."""
    reason = error
    for prefix in (f"message on {channel}:", f"message on {channel} "):
        if channel and reason.startswith(prefix):
            reason = reason[len(prefix) :].strip()
            break
    reason = reason.removeprefix("is ")
    preview = raw if len(raw) <= 80 else raw[:79] + "…"
    return _one_line(f"{reason}: {preview}" if preview.strip() else f"{reason} (empty)")


def to_message(
    channel: str | bytes,
    data: str | bytes,
    *,
    pattern: str | bytes | None = None,
    received_at: float | None = None,
) -> TailMessage:
    """Decode one pub/sub message into a :class:`TailMessage`; never raises for bad data."""
    now = time.time() if received_at is None else received_at
    name = _text(channel)
    pattern_name = _text(pattern) if pattern is not None else None
    try:
        env = decode_message(name, data)
    except DecodeError as exc:
        raw = _text(data)
        return TailMessage(
            received_at=now,
            channel=name,
            pattern=pattern_name,
            envelope=None,
            summary=summarize_undecodable(raw, str(exc), name),
            raw=raw,
            error=str(exc),
        )
    latency = now - env.sent_at if env.sent_at is not None else None
    return TailMessage(
        received_at=now,
        channel=name,
        pattern=pattern_name,
        envelope=env,
        summary=summarize(env),
        latency=latency,
    )


def _text(value: str | bytes | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
