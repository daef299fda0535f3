"""The player session hash (``player:<id>:session``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.contract import codec
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import DecodeError

# Field order as documented in the contract.
SESSION_FIELDS: tuple[str, ...] = (
    "worker_id",
    "websocket_connected",
    "location_id",
    "username",
    "hp",
    "max_hp",
    "stamina",
    "max_stamina",
    "level",
    "xp",
    "last_movement_time",
    "in_combat",
    "last_heartbeat",
)

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "worker_id": codec.decode_str,
    "websocket_connected": codec.decode_bool,
    "location_id": codec.decode_str,
    "username": codec.decode_str,
    "hp": codec.decode_int,
    "max_hp": codec.decode_int,
    "stamina": codec.decode_int,
    "max_stamina": codec.decode_int,
    "level": codec.decode_int,
    "xp": codec.decode_int,
    "last_movement_time": codec.decode_float,
    "in_combat": codec.decode_bool,
}


def fields_json(raw: Mapping[str, str]) -> dict[str, Any]:
    """A stored session hash for JSON output: numbers and booleans typed as the contract
    says; a value that does not decode (reported by :meth:`Session.decode`) stays as stored."""
    out: dict[str, Any] = dict(raw)
    for name, value in raw.items():
        decode = _DECODERS.get(name, codec.decode_float if name == "last_heartbeat" else None)
        if decode is not None:
            out[name] = codec.decoded_or_stored(decode, value)
    return out


@dataclass(frozen=True)
class Session:
    """A decoded session. Unknown or undecodable values are ``None`` with a problem noted."""

    character_id: int
    worker_id: str | None = None
    websocket_connected: bool | None = None
    location_id: str | None = None
    username: str | None = None
    hp: int | None = None
    max_hp: int | None = None
    stamina: int | None = None
    max_stamina: int | None = None
    level: int | None = None
    xp: int | None = None
    last_movement_time: float | None = None
    in_combat: bool | None = None
    last_heartbeat: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def encode(self) -> dict[str, str]:
        """Strict encoding for writing: ids are validated, None fields are left out."""
        check_character_id(self.character_id)
        if self.worker_id is not None:
            check_name(self.worker_id, "worker id")
        if self.location_id is not None:
            check_name(self.location_id, "location id")
        values = {name: getattr(self, name) for name in SESSION_FIELDS}
        encoded = codec.encode_mapping(values)
        for name, value in self.extra.items():
            if codec.decode_str(value) is not None:  # never write back a "None" or ""
                encoded.setdefault(name, value)
        return encoded

    @classmethod
    def decode(
        cls, character_id: int, raw: Mapping[Any, Any], *, now: float | None = None
    ) -> Session:
        """Tolerant decoding of whatever a writer (ours or the plan's) stored."""
        text = {
            (k.decode("utf-8", "replace") if isinstance(k, bytes) else k): (
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            )
            for k, v in raw.items()
        }
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, decoder in _DECODERS.items():
            if name not in text:
                continue
            try:
                values[name] = decoder(text[name])
            except DecodeError as exc:
                problems.append(f"{name}: {exc}")
        if "last_heartbeat" in text:
            heartbeat = codec.decode_epoch(text["last_heartbeat"], now=now)
            if heartbeat is None and codec.decode_str(text["last_heartbeat"]) is not None:
                problems.append("last_heartbeat: not wall-clock epoch seconds (unknown)")
            values["last_heartbeat"] = heartbeat
        extra = {k: v for k, v in text.items() if k not in SESSION_FIELDS}
        return cls(character_id=character_id, extra=extra, problems=tuple(problems), **values)

    def heartbeat_age(self, now: float) -> float | None:
        """Seconds since the last heartbeat, or ``None`` when unknown."""
        if self.last_heartbeat is None:
            return None
        return max(0.0, now - self.last_heartbeat)
