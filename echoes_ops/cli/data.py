"""``validate`` and ``preload``: game data into Redis. Their options and help; what they do
is shared with their plain command lines (:mod:`echoes_ops.cli.plain`), which run
without Typer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from echoes_ops.cli.common import gamedata_dir, guard, state, world_cache
from echoes_ops.cli.options import JsonOption

GamedataOption = Annotated[
    Path | None,
    typer.Option(
        "--gamedata",
        help="Gamedata folder (env ECHOES_OPS_GAMEDATA; default ./gamedata).",
        show_default=False,
    ),
]


def validate(ctx: typer.Context, gamedata: GamedataOption = None, json: JsonOption = False) -> None:
    """Check gamedata: schema, types, unique ids, references, numeric ranges.

    Prints every problem as file:line: message. Exit 0 when clean, 1 when any problem.

    \b
    Examples:
      echoes-ops validate
      echoes-ops validate --gamedata ./gamedata --json
    """
    from echoes_ops.cli.plain import report
    from echoes_ops.gamedata import validate_gamedata

    folder = gamedata_dir(ctx, gamedata)
    result = guard(ctx, lambda: validate_gamedata(folder, cache=world_cache(ctx)))
    code = report(result, folder, as_json=json)
    if code:
        raise typer.Exit(code)


def preload(
    ctx: typer.Context,
    gamedata: GamedataOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff per kind; write nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite every key even if the dataset is unchanged.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask before removing entries gone from gamedata."),
    ] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Write the diff in steps of about 0.4 ms of server time, version record "
            "last, instead of one transaction (for a live tier; always on Redis Cluster).",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="With --online: re-read every key after writing and compare.",
        ),
    ] = True,
    json: JsonOption = False,
) -> None:
    """Load locations, items and NPC definitions into Redis, atomically or --online.

    By default one transaction: readers see the old dataset or the new one, never a mix,
    but its EXEC holds the server about 3 us per key written (60-95 ms for 22,000 keys).
    --online writes the same diff in steps that each stay inside the server-time budget
    (1 ms), each key replaced whole, the location index and the version record last, then
    re-reads what it wrote (--verify); readers may see old and new entries side by side
    for the printed mixed window. Use the default on a first load or while the game is
    stopped, --online on a live tier (doctor says which fits the current diff; an atomic
    swap past the budget on a loaded tier is warned about first); on Redis Cluster preload
    is always --online (one transaction cannot span slots). A stopped or cut-off --online
    run leaves the old version record: run it again, it converges. Entries removed from
    gamedata are deleted: preload first says how many of each kind it will remove and asks (on a
    terminal; without one it refuses unless --yes). A version record (content hash, time,
    operator, counts) is stored. An unchanged dataset is a no-op unless --force. Invalid
    gamedata (exit 3, its first problem as file:line) or too little memory headroom on the
    server (measured with MEMORY USAGE probes; exit 7) writes nothing. After the swap every key is verified: keys evicted
    meanwhile are named per kind (exit 11); an allkeys-* maxmemory-policy is warned about
    first. Ctrl-C or SIGTERM stops at the next step and says whether the version was
    committed (exit 130).

    \b
    Examples:
      echoes-ops preload --dry-run
      echoes-ops preload
      echoes-ops preload --gamedata ./gamedata --force --json
      echoes-ops preload --online
    """
    from echoes_ops.cli.preloading import preload_command
    from echoes_ops.cli.running import CommandExit

    try:
        preload_command(
            state(ctx),
            gamedata,
            dry_run=dry_run,
            force=force,
            yes=yes,
            online=online,
            verify=verify,
            json=json,
        )
    except CommandExit as exc:
        raise typer.Exit(exc.exit_code) from None
