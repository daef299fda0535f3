"""Validation of the ids that go into key and channel names.

An id becomes part of a key (``location:<id>:players``) and of SCAN/PSUBSCRIBE patterns, so
anything that is a glob metacharacter, a hash tag brace, the key separator, white space or a
control character would make a key ambiguous or unmatchable. Such ids are refused here, once,
for every key builder.
"""

from __future__ import annotations

import re

from echoes_ops.errors import InvalidIdError

MAX_ID_LENGTH = 200
_FORBIDDEN = re.compile(r"[*?\[\]{}:\\\s\x00-\x1f\x7f-\x9f]")


def check_name(value: object, what: str = "id") -> str:
    """Return ``value`` as a safe key component or raise :class:`InvalidIdError`."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidIdError(f"{what} is not valid UTF-8: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidIdError(f"{what} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise InvalidIdError(f"{what} must not be empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes from argv arrive as lone surrogates
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise InvalidIdError(f"{what} is not valid UTF-8: {shown!r}") from None
    if len(text) > MAX_ID_LENGTH:
        raise InvalidIdError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    bad = _FORBIDDEN.search(text)
    if bad:
        raise InvalidIdError(
            f"{what} {text!r} contains {bad.group()!r}; ids may not contain white space, "
            "control characters, ':', '\\' or any of * ? [ ] { }"
        )
    return text


def check_character_id(value: object) -> int:
    """Character ids are positive integers (the game's primary keys)."""
    if isinstance(value, bool):
        raise InvalidIdError(f"character id must be a positive integer, got {value!r}")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidIdError(f"character id is not valid UTF-8: {value!r}") from None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        number = int(value.strip())
    else:
        raise InvalidIdError(f"character id must be a positive integer, got {value!r}")
    if number <= 0:
        raise InvalidIdError(f"character id must be a positive integer, got {number}")
    return number
