"""``reconcile``: find presence drift and, with --fix, repair it (after saying what)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli.common import (
    confirm,
    emit_json,
    guard,
    redis_client,
    run,
    run_stoppable,
    state,
    stdout_console,
    write_log,
)
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.reconcile import DriftPlan, ReconcileReport
    from echoes_ops.operations.stop import StopToken

# what each repair does, said before asking ("{n}": how many)
REPAIR_WORDS = {
    "dead_worker": "remove {n} session(s) of dead workers (with their presence and connection)",
    "stale_connection": "remove {n} dead worker connection entr(y/ies)",
    "orphan_member": "remove {n} location-set member(s) that have no session",
    "location_mismatch": "remove {n} location-set member(s) their session does not name",
    "missing_member": "add {n} player(s) missing from their location set",
    "no_ttl_session": "give {n} session(s) without a TTL the session TTL",
    "no_ttl_inventory": "give {n} inventory cache(s) without a TTL the inventory TTL",
    "no_ttl_lock": "give {n} lock(s) without a TTL a TTL",
}


def plan_words(planned: dict[str, int]) -> str:
    return "; ".join(REPAIR_WORDS[kind].format(n=f"{n:,}") for kind, n in planned.items())


def reconcile(
    ctx: typer.Context,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix", help="Repair what is found: says what it will remove, asks, audited."
        ),
    ] = False,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            metavar="KIND",
            help="Only this kind (repeatable): count and repair nothing else.",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help=(
                "Seconds a dead worker's players are left alone (reported as pending); on a "
                "cluster also the wait before the confirming pass."
            ),
        ),
    ] = 60.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Find every kind of drift between sessions, location sets and workers, count it per
    kind with examples, and with --fix repair it. Dry run by default (exit 1 when drift is
    found, 0 when clean). A dead worker's players inside --grace are reported as pending,
    with the time until they can be repaired.

    --fix first says how many of what it will remove and asks (on a terminal; without one it
    refuses unless --yes). Repairs re-check each condition inside Redis, so a player who
    reconnects meanwhile is left alone; a second run finds nothing. The audit record names
    what was repaired (the first 100 ids per kind, and the total). Ctrl-C or SIGTERM during
    the repairs stops before the next one and says how many ran (exit 130, audited).

    On Redis Cluster a player's keys lie in different slots: repairs across slots act only on
    findings a second pass sees again --grace seconds after the first (--fix waits for it),
    each change re-checking the key it changes in the same call; the output says so.

    Kinds: orphan_member, location_mismatch, multi_location, missing_member, dead_worker,
    stale_connection, no_ttl_session, no_ttl_inventory, no_ttl_lock, unknown_location.

    \b
    Examples:
      echoes-ops reconcile
      echoes-ops reconcile --kind dead_worker --grace 120
      echoes-ops reconcile --fix --kind orphan_member
      echoes-ops reconcile --fix --yes --json
    """
    from echoes_ops.operations.reconcile import check_kinds, find_drift
    from echoes_ops.operations.writes import CLI, repair_drift_audited

    kinds = guard(ctx, lambda: check_kinds(kind))

    async def look() -> DriftPlan:
        async with redis_client(ctx) as r:
            plan = await find_drift(r, grace=grace)
        plan.report.selected = kinds
        return plan

    plan = run(ctx, look)
    report: ReconcileReport = plan.report
    planned = plan.planned(kinds)
    if fix:
        if planned:
            target = guard(ctx, lambda: state(ctx).settings().redis_target().display)
            confirm(ctx, f"Repair drift on {target}: {plan_words(planned)}?", yes=yes)

        async def apply(stop: StopToken) -> ReconcileReport:
            async with write_log(ctx) as log:
                return await repair_drift_audited(log, plan, kinds=kinds, via=CLI, stop=stop)

        report = run_stoppable(ctx, apply)  # Ctrl-C stops between repairs, says how many ran
    if json:
        emit_json(report.as_dict())
    else:
        _print(report, fix=fix)
    if not fix and not report.clean:
        raise typer.Exit(int(ExitCode.PROBLEMS_FOUND))


def _print(report: ReconcileReport, *, fix: bool) -> None:
    console = stdout_console()
    mode = "repaired" if fix else "dry run (use --fix to repair)"
    console.print(
        f"scanned {report.scanned.get('sessions', 0)} sessions, "
        f"{report.scanned.get('presence_members', 0)} presence members in "
        f"{report.scanned.get('location_sets', 0)} sets, "
        f"{report.scanned.get('workers', 0)} workers: {report.drift} drift finding(s); {mode}",
        markup=False,
    )
    for name in report.chosen():
        found = report.kinds[name]
        if found.found:
            fixed = f", fixed {found.fixed}" if fix else ""
            unfixable = f", {found.not_repairable} not repairable" if found.not_repairable else ""
            console.print(f"  {name:<18} {found.found}{fixed}{unfixable}", markup=False)
            for example in found.examples[:3]:
                console.print(f"      e.g. {example}", markup=False)
        if found.pending:
            console.print(
                f"  {name}: {found.pending} pending, repairable in "
                f"{found.pending_ready_in or 0:.0f} s (inside --grace {report.grace_seconds:g} s)",
                markup=False,
            )
    if report.note:
        console.print(f"  note: {report.note}", markup=False)
    if report.unconfirmed:
        console.print(
            f"  {report.unconfirmed} finding(s) not seen again by the confirming pass: left alone",
            markup=False,
        )
    if report.selected is not None:
        others = sum(k.found for n, k in report.kinds.items() if n not in report.chosen())
        if others:
            console.print(
                f"  ({others} finding(s) of other kinds not shown: drop --kind to see them)",
                markup=False,
            )
