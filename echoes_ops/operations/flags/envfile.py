"""The deployment's env file (``NAME=value`` lines, dotenv / docker ``--env-file`` style):
the one reader and writer every flag face uses (``flags set``/``status``, the dashboard's
Flags tab, ``doctor``).

- parse: :func:`env_value`, the value a name gets (the last assignment wins). Accepted:
  leading blanks and tabs, ``export NAME=``, blanks or tabs around ``=``, single or double
  quotes (a ``#`` inside quotes is part of the value), a trailing comment after a blank or
  a tab (``NAME=false<TAB># why``), CRLF line ends. ``# NAME=...`` is a comment.
- read: :func:`read_env_file`, the real path (symlinks followed) and the text, or a
  :class:`~echoes_ops.errors.ConfigError` naming the file.
- plan an edit: :func:`plan_env_update`, every ``NAME=`` line set to a value in place
  (quotes, ``export``, comments and line ends kept) or one line appended.
- replace atomically: :func:`prepare_replacement` writes a temporary file next to the
  real one (mode and owner kept, fsynced); :func:`commit_replacement` renames it into
  place and fsyncs the directory, so readers see the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from echoes_ops.errors import ConfigError

_ASSIGNMENT = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)(?P<rest>.*)$"
)
_INLINE_COMMENT = re.compile(r"[ \t]+#")


def _split_value(rest: str) -> tuple[str, str, str]:
    """(quote, value, tail) of what follows ``NAME=``; the tail keeps a trailing comment."""
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = 1
        while end < len(rest):
            if rest[end] == "\\" and quote == '"':
                end += 2
                continue
            if rest[end] == quote:
                return quote, rest[1:end], rest[end + 1 :]
            end += 1
        return "", rest, ""  # unbalanced quote: take it whole
    comment = _INLINE_COMMENT.search(rest)
    if comment is not None:
        return "", rest[: comment.start()], rest[comment.start() :]
    value = rest.rstrip(" \t")
    return "", value, rest[len(value) :]


def env_value(text: str, name: str) -> str | None:
    """The value ``name`` gets from an env file's text (the last assignment wins)."""
    found = None
    for raw in text.split("\n"):
        match = _ASSIGNMENT.match(raw.rstrip("\r"))
        if match is not None and match["name"] == name:
            found = _split_value(match["rest"])[1]
    return found


@dataclass
class EnvChange:
    line: int  # 1-based; for an append, the new line's number
    before: str | None  # None: appended
    after: str


@dataclass
class EnvPlan:
    path: str
    original: str
    new_text: str
    current: str | None
    changes: list[EnvChange]

    @property
    def changed(self) -> bool:
        return self.new_text != self.original


def plan_env_update(path: str, text: str, name: str, value: str) -> EnvPlan:
    """The env file's text with every ``name=`` line set to ``value`` (or one appended);
    every other byte kept."""
    parts = text.split("\n")
    changes: list[EnvChange] = []
    for index, raw in enumerate(parts):
        cr = "\r" if raw.endswith("\r") else ""
        body = raw[: len(raw) - len(cr)]
        match = _ASSIGNMENT.match(body)
        if match is None or match["name"] != name:
            continue
        quote, old, tail = _split_value(match["rest"])
        if old == value:
            continue
        new_body = f"{match['lead']}{name}{match['eq']}{quote}{value}{quote}{tail}"
        parts[index] = new_body + cr
        changes.append(EnvChange(index + 1, body, new_body))
    new_text = "\n".join(parts)
    current = env_value(text, name)
    if current is None:
        newline = "\r\n" if "\r\n" in text else "\n"
        line = f"{name}={value}"
        if new_text and not new_text.endswith("\n"):
            new_text += newline
        new_text += line + newline
        changes.append(EnvChange(new_text.count("\n"), None, line))
    return EnvPlan(path, text, new_text, current, changes)


def read_env_file(path: str) -> tuple[Path, str]:
    """The real path (symlinks followed, so the link is kept) and the text."""
    real = Path(os.path.realpath(path))
    try:
        if not real.is_file():
            raise ConfigError(
                f"env file {path} does not exist or is not a regular file",
                hint="check --env-file / ECHOES_OPS_ENV_FILE",
            )
        raw = real.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror or exc}") from None
    return real, raw.decode("utf-8", "surrogateescape")


def prepare_replacement(real: Path, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``real``, with its mode (and owner, when
    allowed), flushed to disk. The caller renames it into place or removes it."""
    try:
        st = real.stat()
        fd, name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write next to env file {real}: {exc.strerror or exc}",
            hint="the directory must be writable to replace the file atomically",
        ) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # not root: keep our own owner
                    os.fchown(handle.fileno(), st.st_uid, st.st_gid)
            handle.write(text.encode("utf-8", "surrogateescape"))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write env file {real}: {exc.strerror or exc}") from None
    return tmp


def commit_replacement(tmp: Path, real: Path) -> None:
    os.replace(tmp, real)
    directory = os.open(real.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
