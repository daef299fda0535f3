"""Hash-field codecs: how values are stored as Redis strings.

Encoding is strict and matches what the plan's readers expect: strings as-is, integers and
floats in decimal, booleans ``"true"``/``"false"``, dicts and lists as JSON, and a missing
value as a missing field (never ``"None"``). Decoding is tolerant of what the plan's own code
writes: numbers as strings (``"12"``, ``"12.0"``), ``"True"``, the string ``"None"``, and
heartbeats taken from an event-loop clock, which are reported as unknown rather than stale.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from echoes_ops.errors import DecodeError

# Epoch seconds before this (2001-09-09) cannot be a real wall-clock timestamp of this game;
# the plan's loop.time() heartbeats are seconds since boot, far below it.
MIN_PLAUSIBLE_EPOCH = 1_000_000_000.0
# A timestamp this far in the future is a broken clock, not a fresh heartbeat.
MAX_FUTURE_SKEW = 86_400.0

_NULLS = frozenset({"", "None", "null", "none", "NULL"})


def _dump_json(value: Any) -> str:
    """Compact UTF-8 JSON (orjson, C speed). Non-finite floats are refused by validation."""
    try:
        text = orjson.dumps(value)
    except TypeError as exc:
        raise DecodeError(f"cannot store {type(value).__name__} as JSON: {exc}") from None
    if b"null" in text and not _all_finite(value):
        # orjson writes NaN and infinity as null, which would change the value silently
        raise DecodeError(f"cannot store non-finite numbers in {value!r}")
    return text.decode("utf-8")


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    return True


def encode_bool(value: bool) -> str:
    return "true" if value else "false"


def encode_json(value: Any) -> str:
    return _dump_json(value)


def encode_float(value: float) -> str:
    return _encode_float(value)


def _encode_float(value: float) -> str:
    if not math.isfinite(value):
        raise DecodeError(f"cannot store non-finite number {value!r}")
    return repr(value)


_ENCODERS: dict[type, Any] = {
    str: str,
    bool: lambda value: "true" if value else "false",
    int: int.__repr__,
    float: _encode_float,
    dict: _dump_json,
    list: _dump_json,
    tuple: _dump_json,
}


def encode_value(value: Any) -> str | None:
    """Encode one value for a hash field. ``None`` means "leave the field out"."""
    if value is None:
        return None
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        # subclasses (IntEnum, str subclasses, OrderedDict...) take the slow, exact path
        for base, candidate in _ENCODERS.items():
            if isinstance(value, base) and not (base is int and isinstance(value, bool)):
                encoder = candidate
                break
        else:
            raise DecodeError(f"cannot store a value of type {type(value).__name__}")
    try:
        result: str = encoder(value)
    except ValueError as exc:  # NaN or infinity inside a JSON document
        raise DecodeError(f"cannot store {value!r}: {exc}") from None
    return result


def encode_mapping(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode a record into hash fields, dropping ``None`` values."""
    out: dict[str, str] = {}
    lookup = _ENCODERS.get
    for name, value in values.items():
        kind = type(value)
        if kind is str:
            out[name] = value
        elif value is not None:
            encoder = lookup(kind)
            out[name] = encoder(value) if encoder is not None else encode_value(value)  # type: ignore[assignment]
    return out


def _text(raw: str | bytes | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    raw = raw.strip()
    return None if raw in _NULLS else raw


def decode_str(raw: str | bytes | None) -> str | None:
    return _text(raw)


def decode_int(raw: str | bytes | None) -> int | None:
    """``"12"`` and ``"12.0"`` are 12; anything else that is not a whole number raises."""
    text = _text(raw)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise DecodeError(f"not a whole number: {text!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise DecodeError(f"not a whole number: {text!r}")
    return int(number)


def decode_float(raw: str | bytes | None) -> float | None:
    text = _text(raw)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise DecodeError(f"not a number: {text!r}") from None
    if not math.isfinite(number):
        raise DecodeError(f"not a finite number: {text!r}")
    return number


def decode_bool(raw: str | bytes | None) -> bool | None:
    text = _text(raw)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise DecodeError(f"not a boolean: {text!r}")


def decode_json(raw: str | bytes | None) -> Any:
    text = _text(raw)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None


def decode_epoch(raw: str | bytes | None, *, now: float | None = None) -> float | None:
    """Wall-clock epoch seconds, or ``None`` when the value cannot be one (unknown).

    Values from a monotonic clock (the plan's ``loop.time()``) and far-future values are
    unknown, never "stale": callers must not act on them as if the player were gone.
    """
    try:
        value = decode_float(raw)
    except DecodeError:
        return None
    if value is None or value < MIN_PLAUSIBLE_EPOCH:
        return None
    current = time.time() if now is None else now
    if value > current + MAX_FUTURE_SKEW:
        return None
    return value


def typed_fields(
    raw: Mapping[str, str], *, ints: Iterable[str] = (), floats: Iterable[str] = ()
) -> dict[str, Any]:
    """A stored hash for JSON output: the named fields as numbers (JSON numbers, never
    ``"71"``), every other field as stored; a value that does not decode stays as stored."""
    out: dict[str, Any] = dict(raw)
    for names, decode in ((ints, decode_int), (floats, decode_float)):
        for name in names:
            if name in out:
                out[name] = decoded_or_stored(decode, out[name])
    return out


def decoded_or_stored(decode: Callable[[Any], Any], value: Any) -> Any:
    """``decode(value)``, or ``value`` as stored when it does not decode."""
    try:
        return decode(value)
    except DecodeError:
        return value
