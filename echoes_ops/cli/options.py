"""Options shared by many commands, declared once (as rq's ``rq/cli`` keeps its shared
options in one module): a command takes ``json: JsonOption = False`` and reads the same,
documents the same and behaves the same as every other reader."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON on stdout (numbers as numbers, times as epoch seconds) instead of text.",
    ),
]

WideOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="FORMAT",
        help="table (the default) or wide: more columns (e.g. pid and host).",
    ),
]
