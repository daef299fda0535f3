"""``reconcile``: find presence drift and, with --fix, repair it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli.common import audited_redis, emit_json, redis_client, run, stdout_console
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.reconcile import ReconcileReport


def reconcile(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is found (audited).")] = False,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, help="Seconds a dead worker's players are left alone."),
    ] = 60.0,
    json: JsonOption = False,
) -> None:
    """Find every kind of drift between sessions, location sets and workers, count it per
    kind with examples, and with --fix repair it. Dry run by default (exit 1 when drift is
    found, 0 when clean). Repairs re-check each condition inside Redis, so a player who
    reconnects meanwhile is left alone; a second run finds nothing.

    Kinds: orphan_member, location_mismatch, multi_location, missing_member, dead_worker,
    stale_connection, no_ttl_session, no_ttl_inventory, no_ttl_lock, unknown_location.

    \b
    Examples:
      echoes-ops reconcile
      echoes-ops reconcile --fix --json
      echoes-ops reconcile --fix --grace 120
    """
    from echoes_ops.operations.reconcile import reconcile as do_reconcile

    async def work() -> ReconcileReport:
        if not fix:
            async with redis_client(ctx) as r:
                return await do_reconcile(r, fix=False, grace=grace)
        args = {"grace": grace}
        async with audited_redis(ctx, "reconcile.fix", args, dry_run=False) as (r, entry):
            report = await do_reconcile(r, fix=True, grace=grace)
            entry.detail = {
                name: {"found": k.found, "fixed": k.fixed}
                for name, k in report.kinds.items()
                if k.found
            }
            return report

    report = run(ctx, work)
    if json:
        emit_json(report.as_dict())
    else:
        console = stdout_console()
        mode = "repaired" if fix else "dry run (use --fix to repair)"
        console.print(
            f"scanned {report.scanned.get('sessions', 0)} sessions, "
            f"{report.scanned.get('presence_members', 0)} presence members in "
            f"{report.scanned.get('location_sets', 0)} sets, "
            f"{report.scanned.get('workers', 0)} workers: {report.drift} drift finding(s); {mode}"
        )
        for name, kind in report.kinds.items():
            if not kind.found:
                continue
            fixed = f", fixed {kind.fixed}" if fix else ""
            unfixable = f", {kind.not_repairable} not repairable" if kind.not_repairable else ""
            console.print(f"  {name:<18} {kind.found}{fixed}{unfixable}")
            for example in kind.examples[:3]:
                console.print(f"      e.g. {example}")
    if not fix and not report.clean:
        raise typer.Exit(int(ExitCode.PROBLEMS_FOUND))
