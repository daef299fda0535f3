"""``audit``: read the trail of operator actions back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import emit_json, run, state, stdout_console
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.audit import AuditRecord


def audit(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Newest N records.")
    ] = 50,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action (e.g. preload, locks, locks.release).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Show who did what and when: every mutating command, with its arguments (secrets
    redacted), dry run or not, and how it ended. Reads PostgreSQL when DATABASE_URL is set,
    else the capped Redis stream echoes:audit.

    \b
    Examples:
      echoes-ops audit --limit 20
      echoes-ops audit --action preload --json
    """
    from echoes_ops.client.connect import open_redis
    from echoes_ops.operations.audit import AuditLog, read_audit

    settings = state(ctx).settings()

    async def work() -> tuple[str, list[AuditRecord]]:
        log = AuditLog(operator=settings.operator_name(), database_url=settings.database_dsn())
        if log.database_url:
            return await read_audit(log, limit=limit, action=action)
        async with open_redis(settings.redis_target()) as r:
            log.redis = r
            return await read_audit(log, limit=limit, action=action)

    source, records = run(ctx, work)
    if json:
        emit_json({"source": source, "records": [r.as_dict() for r in records]})
        return
    console = stdout_console()
    console.print(f"{len(records)} record(s) from {source}, newest first")
    for rec in records:
        when = fmt.timestamp(rec.at)
        dry = " (dry run)" if rec.dry_run else ""
        args = " ".join(
            f"{k}={v}" for k, v in rec.args.items() if k != "via" and v not in (None, False, [], "")
        )
        error = (rec.detail or {}).get("error")
        tail = f": {error}" if error else ""
        via = rec.args.get("via") or "-"
        line = (
            f"{when}  {rec.operator:<12} {via:<9} {rec.action:<18} {rec.result}{dry}  {args}{tail}"
        )
        # arguments are stored as given, refused ones too: show control characters escaped
        # and brackets as typed, never as terminal escapes or rich markup
        console.print(_printable(line), markup=False)


def _printable(text: str) -> str:
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
