"""Render the CLI reference (every command's ``--help``) as Markdown for docs/cli.md.

``python -m echoes_ops.cli.reference --write`` refreshes the generated part of docs/cli.md;
tests/test_docs.py fails when the file and ``--help`` disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

BEGIN = "<!-- BEGIN GENERATED CLI REFERENCE: python -m echoes_ops.cli.reference --write -->"
END = "<!-- END GENERATED CLI REFERENCE -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
WIDTH = 100


def _context(command: Any, name: str, parent: Any = None) -> Any:
    settings = dict(getattr(command, "context_settings", None) or {})
    settings.update(terminal_width=WIDTH, max_content_width=WIDTH)
    if parent is not None:
        settings.setdefault("help_option_names", parent.help_option_names)
    return typer.Context(command, info_name=name, parent=parent, **settings)


def _walk(command: Any, ctx: Any) -> Iterator[tuple[str, Any, Any]]:
    # typer vendors its own click, so commands are recognised by shape, not by class
    yield ctx.command_path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, _context(sub, name, ctx))


def commands() -> list[tuple[str, Any, Any]]:
    """(command path, command, context) for every command, depth first."""
    from echoes_ops.cli.main import app

    root = typer.main.get_command(app)
    return list(_walk(root, _context(root, "echoes-ops")))


def render() -> str:
    parts = [BEGIN, ""]
    for path, command, ctx in commands():
        parts.append(f"### `{path}`")
        parts.append("")
        parts.append("```text")
        parts.append(command.get_help(ctx).rstrip())
        parts.append("```")
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def splice(document: str, generated: str) -> str:
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < 0:
        raise ValueError(f"{DOC} lacks the generated-section markers")
    return document[:start] + generated + document[end + len(END) :]


def main() -> None:
    document = DOC.read_text(encoding="utf-8")
    updated = splice(document, render())
    if "--write" in sys.argv:
        DOC.write_text(updated, encoding="utf-8")
    elif updated != document:
        sys.stderr.write("docs/cli.md is out of date; run with --write\n")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
