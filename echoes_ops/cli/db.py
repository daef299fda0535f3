"""``db migrate``: our tables in PostgreSQL (schema ``echoes_ops``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli.common import emit_json, fail, run, state, stdout_console
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.migrations import MigrateResult

app = typer.Typer(help="PostgreSQL tables of echoes-ops (flags, audit).", no_args_is_help=True)


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List pending migrations only.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Create or upgrade the echoes_ops schema (flags and audit tables) in DATABASE_URL.

    Idempotent: running it again applies nothing. Never touches the game's own tables.

    \b
    Examples:
      echoes-ops db migrate --dry-run
      DATABASE_URL=postgresql://ops@db/game echoes-ops db migrate
    """
    from echoes_ops.operations.migrations import migrate as do_migrate

    settings = state(ctx).settings()
    dsn = settings.database_dsn()
    if not dsn:
        fail("DATABASE_URL is not set (or pass --database-url)", int(ExitCode.CONFIG))

    async def work() -> MigrateResult:
        return await do_migrate(dsn, dry_run=dry_run, timeouts=settings.pg_timeouts())

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
        return
    console = stdout_console()
    if result.dry_run:
        console.print(
            f"schema version {result.current}; pending: {result.pending or 'none'} (dry run)"
        )
    elif result.applied:
        console.print(f"applied migration(s) {result.applied}; schema version {result.current}")
    else:
        console.print(f"up to date (schema version {result.current})")
