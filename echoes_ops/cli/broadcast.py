"""``broadcast global|location|player``: operator messages on the game's channels."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import confirm, emit_json, refuse_audited, run, state, write_log
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode, OpsError

if TYPE_CHECKING:
    from echoes_ops.contract.envelopes import Envelope
    from echoes_ops.operations.broadcast import BroadcastResult, CountdownResult, Step
    from echoes_ops.operations.writes import BroadcastRequest

T = TypeVar("T")

app = typer.Typer(
    help="Send announcements, location updates and personal messages (the plan's envelopes).",
    no_args_is_help=True,
)
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print the envelope and how many would receive it; publish nothing."
    ),
]
MessageArgument = Annotated[
    str, typer.Argument(help="What players see (at most 500 characters, no control characters).")
]


def _line(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _report(result: BroadcastResult, json: bool) -> None:
    if json:
        emit_json(result.as_dict())
        return
    heard = result.audience
    players = result.reach.words() if result.reach is not None else "? players"
    if result.dry_run:
        _line(f"dry run: nothing published on {result.channel}")
        _line(result.text)
        _line(
            f"would reach {players}, through {heard.channel_subscribers} worker "
            f"subscription(s) to {result.channel}"
            + (
                f" (and clients of up to {heard.patterns} pattern subscription(s) on the server)"
                if heard.patterns
                else ""
            )
        )
        return
    _line(
        f"published on {result.channel} for {players}: {result.receivers} subscriber(s) "
        "received it (the workers that deliver it to their players)"
    )


def _publish(
    ctx: typer.Context, request: BroadcastRequest, envelope: Envelope, *, dry_run: bool
) -> BroadcastResult:
    """Publish (or count) as one audited write; a location is first checked against the
    static cache. A refusal is recorded as failed and nothing is published."""

    async def work() -> BroadcastResult:
        from echoes_ops.operations.writes import CLI, broadcast_audited

        async with write_log(ctx) as log:
            return await broadcast_audited(
                log,
                request,
                envelope,
                via=CLI,
                dry_run=dry_run,
                mode=state(ctx).settings().pubsub_mode,
            )

    return run(ctx, work)


def _checked(
    ctx: typer.Context,
    action: str,
    args: dict[str, Any],
    build: Callable[[], T],
    *,
    dry_run: bool,
) -> T:
    """``build()``: the checks that need no server. A refusal is audited, then exits."""
    try:
        return build()
    except OpsError as exc:
        refuse_audited(ctx, action, args, exc, dry_run=dry_run)


def _plan(steps: list[Step]) -> str:
    shown = [repr(s.message) for s in steps]
    if len(shown) > 5:
        shown = [*shown[:3], "...", shown[-1]]
    return ", ".join(shown)


@app.command("global")
def global_(
    ctx: typer.Context,
    message: MessageArgument,
    within: Annotated[
        str | None,
        typer.Option(
            "--in",
            metavar="DURATION",
            help="Count down: announce 'MESSAGE in 5 minutes' now, then every --every, and "
            "MESSAGE itself when DURATION has passed (90s, 5m, 1h, 1h30m).",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            metavar="DURATION",
            help="Step of the countdown (default: the whole --in).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Announce to every player on game:broadcast (global_broadcast, payload type
    server_announcement). Asks for confirmation; audited.

    A countdown (--in, --every) announces at each step and can be stopped with Ctrl-C
    between steps (exit 130; the audit record says which steps went out).

    \b
    Examples:
      echoes-ops broadcast global "Server restart at 03:00 UTC" --dry-run
      echoes-ops broadcast global "Maintenance" --in 5m --every 1m --yes
    """
    from echoes_ops.operations.broadcast import (
        BroadcastArgumentError,
        countdown_steps,
        global_envelope,
        parse_duration,
    )
    from echoes_ops.operations.writes import BroadcastRequest

    request = BroadcastRequest("global", message, within=within, every=every)
    args, action = request.args(), request.action_name

    def plan() -> tuple[Envelope, list[Step] | None]:
        envelope = global_envelope(message)
        if within is None:
            if every is not None:
                raise BroadcastArgumentError("--every needs --in")
            return envelope, None
        step = parse_duration(every) if every is not None else None
        steps = countdown_steps(message, parse_duration(within), step)
        return global_envelope(steps[0].message), steps

    envelope, steps = _checked(ctx, action, args, plan, dry_run=dry_run)
    if steps is None:
        if not dry_run:
            confirm(ctx, f"Announce {message!r} to every player?", yes=yes)
            envelope = global_envelope(message)  # stamped now, not before the question
        _report(_publish(ctx, request, envelope, dry_run=dry_run), json)
        return
    if dry_run:
        result = _publish(ctx, request, envelope, dry_run=True)
        if json:
            countdown = [{"at": s.at, "message": s.message} for s in steps]
            emit_json({**result.as_dict(), "countdown": countdown})
            return
        _report(result, False)
        _line(
            f"countdown of {len(steps)} announcement(s) over {fmt.duration(steps[-1].at)}: {_plan(steps)}"
        )
        return
    confirm(
        ctx,
        f"Announce to every player {len(steps)} time(s) over {fmt.duration(steps[-1].at)}: {_plan(steps)}?",
        yes=yes,
    )
    done = _run_countdown(ctx, request, steps, json)
    if json:
        emit_json(done.as_dict())


def _run_countdown(
    ctx: typer.Context, request: BroadcastRequest, steps: list[Step], json: bool
) -> CountdownResult:
    from echoes_ops.operations.writes import CLI, countdown_audited

    sent = 0

    def on_step(step: Step, result: BroadcastResult) -> None:
        nonlocal sent
        sent += 1
        if not json:
            players = f" for {result.reach.words()}" if result.reach is not None else ""
            _line(
                f"[{sent}/{len(steps)}] sent {step.message!r}{players}: "
                f"{result.receivers} subscriber(s) received it"
            )

    async def work() -> CountdownResult:
        async with write_log(ctx) as log:
            return await countdown_audited(log, request, steps, via=CLI, on_step=on_step)

    try:
        return run(ctx, work)
    except typer.Exit as stopped:
        if stopped.exit_code == int(ExitCode.INTERRUPTED):
            sys.stderr.write(_interrupted(steps, sent))
        raise


def _interrupted(steps: list[Step], done: int) -> str:
    """What an interrupted countdown did and did not send (stderr lines)."""
    lines = [f"echoes-ops: countdown stopped: {done} of {len(steps)} announcement(s) sent"]
    lines += [f"  sent      {s.message!r}" for s in steps[:done]]
    lines += [f"  not sent  {s.message!r} (due at +{fmt.duration(s.at)})" for s in steps[done:]]
    return "".join(line + "\n" for line in lines)


@app.command("location")
def location(
    ctx: typer.Context,
    location_id: Annotated[str, typer.Argument(help="Location id (must be in the static cache).")],
    message: MessageArgument,
    exclude: Annotated[
        int | None,
        typer.Option(
            "--exclude", metavar="ID", help="Character id not to tell.", show_default=False
        ),
    ] = None,
    action: Annotated[
        str,
        typer.Option("--action", metavar="ACTION", help="The payload's data.action."),
    ] = "announcement",
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Tell the players in one location (location_update on location:<id>). The location
    must be in the static cache (location:<id>:cache); audited.

    \b
    Examples:
      echoes-ops broadcast location overpass "The bridge shakes." --action event
      echoes-ops broadcast location overpass "Someone screams." --exclude 5 --dry-run
    """
    from echoes_ops.operations.broadcast import location_envelope
    from echoes_ops.operations.writes import BroadcastRequest

    request = BroadcastRequest(
        "location", message, target=location_id, exclude=exclude, action=action
    )
    envelope = _checked(
        ctx,
        request.action_name,
        request.args(),
        lambda: location_envelope(location_id, message, action=action, exclude_player_id=exclude),
        dry_run=dry_run,
    )
    _report(_publish(ctx, request, envelope, dry_run=dry_run), json)


@app.command("player")
def player(
    ctx: typer.Context,
    player_id: Annotated[int, typer.Argument(help="Character id.")],
    message: MessageArgument,
    type_: Annotated[
        str, typer.Option("--type", metavar="TYPE", help="The payload's type.")
    ] = "system_message",
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="JSON",
            help="A JSON object merged into the payload's data (beside message).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Tell one player (personal_message on player:<id>); audited.

    \b
    Examples:
      echoes-ops broadcast player 5 "Your account was restored."
      echoes-ops broadcast player 5 "Gift received" --type item_update --data '{"item": "bandage"}'
    """
    from echoes_ops.operations.broadcast import parse_data, personal_envelope
    from echoes_ops.operations.writes import BroadcastRequest

    request = BroadcastRequest("player", message, target=player_id, type=type_, data=data)
    envelope = _checked(
        ctx,
        request.action_name,
        request.args(),
        lambda: personal_envelope(player_id, message, type_=type_, data=parse_data(data)),
        dry_run=dry_run,
    )
    _report(_publish(ctx, request, envelope, dry_run=dry_run), json)
