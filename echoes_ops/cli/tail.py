"""``tail``: a live, decoded view of the tier's pub/sub traffic."""

from __future__ import annotations

import json as jsonlib
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import announce_target, fail, run, state, warn
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.tail import Subscriptions, TailGap, TailMessage

CHANNEL_WIDTH = 20
TYPE_WIDTH = 16


class _StdoutClosed(Exception):
    """The reader of our stdout went away (``| head``): stop quietly."""


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # keep the interpreter's final flush from failing on the closed pipe too
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise _StdoutClosed from None


def _note(text: str) -> None:
    sys.stderr.write(f"echoes-ops: {text}\n")
    sys.stderr.flush()


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S.%f")[:-3]


def human_line(message: TailMessage) -> str:
    """``HH:MM:SS.mmm  channel  type  summary``."""
    return (
        f"{_clock(message.received_at)}  {message.channel:<{CHANNEL_WIDTH}}  "
        f"{message.type:<{TYPE_WIDTH}}  {message.summary}"
    )


def gap_line(gap: TailGap) -> str:
    return (
        f"reconnected after {fmt.timing(gap.duration)} ({gap.error}); messages published in "
        "the gap were lost"
    )


def _json_line(data: dict[str, Any]) -> str:
    return jsonlib.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def tail(
    ctx: typer.Context,
    channels: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CHANNEL|PATTERN]...",
            help="Channels to SUBSCRIBE, or glob patterns (*, ?, [) to PSUBSCRIBE. "
            "Default: game:broadcast, location:*, player:*, game:workers.",
            show_default=False,
        ),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            metavar="TYPE",
            help="Only messages of this type: the envelope's (location_update, worker_join, "
            "...), the payload's (combat_update, ...) or 'undecodable'. Repeatable.",
            show_default=False,
        ),
    ] = None,
    locations: Annotated[
        list[str] | None,
        typer.Option(
            "--location",
            "-l",
            metavar="LOCATION_ID",
            help="Only updates for this location. Repeatable.",
            show_default=False,
        ),
    ] = None,
    players: Annotated[
        list[int] | None,
        typer.Option(
            "--player",
            "-p",
            metavar="CHARACTER_ID",
            help="Only messages to, from or about this character id. Repeatable.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            "-n",
            min=1,
            metavar="N",
            help="Exit after N messages (after filtering).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.0,
            metavar="SECONDS",
            help="Exit (code 0) after SECONDS. Default: run until Ctrl-C.",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Watch pub/sub live, decoded: one line per message with time, channel, type and a
    summary. --json prints one JSON object per line ({"event": "message", ...}, and
    {"event": "gap", ...} after a reconnect) for piping.

    Follows REDIS_PUBSUB_MODE: in sharded mode, location and player channels are
    SSUBSCRIBEd (on every cluster node that owns one): a pattern also subscribes the
    shard channels of the gamedata's locations and of the players named with --player.

    Survives Redis restarts: it reconnects by itself and says so; pub/sub does not queue,
    so messages published while it was disconnected are lost (and reported as a gap). A
    connection silent for ECHOES_OPS_DEAD_AFTER seconds (6), not even answering the PING
    sent after a third of that, counts as lost too (a stalled server, a half-open link).
    Wrong credentials or a missing ACL permission stop it (exit 5 / 6).

    \b
    Examples:
      echoes-ops tail
      echoes-ops tail --location overpass
      echoes-ops tail 'player:5' --type combat_update
      echoes-ops tail --json --count 100 | jq -r .summary
      echoes-ops tail 'location:*' --player 5 --timeout 60
    """
    from echoes_ops.operations.tail import (
        TailArgumentError,
        TailFilter,
        TailGap,
        known_types,
        plan_subscriptions,
    )
    from echoes_ops.operations.tail import tail as watch

    try:
        subs = plan_subscriptions(channels or ())
        wanted = TailFilter.build(types or (), locations or (), players or ())
    except TailArgumentError as exc:
        fail(str(exc), int(ExitCode.USAGE))
    for unknown in wanted.unknown_types():
        warn(
            f"--type {unknown} is not a known message type, so it may never match "
            f"(known: {', '.join(known_types())})"
        )
    target = state(ctx).settings().redis_target()
    first = True

    def subscribed(plan: Subscriptions) -> None:
        nonlocal first
        if first and not json:
            _note(f"listening on {plan.describe()} at {target.display} (Ctrl-C to stop)")
            _note(f"filters: {wanted.describe()}")
            if target.pubsub_mode == "sharded" and plan.patterns:
                _note(
                    "pub/sub mode sharded: patterns hear classic publishes only; shard "
                    "channels are the gamedata's locations and the players named "
                    "(--player ID or player:ID)"
                )
        first = False

    def disconnected(reason: str) -> None:
        if not json:
            _note(f"lost the connection: {reason}; reconnecting...")

    def show(event: TailMessage | TailGap) -> None:
        if isinstance(event, TailGap):
            if json:
                _write(_json_line(event.as_dict()))
            else:
                _note(gap_line(event))
        elif json:
            _write(_json_line(event.as_dict()))
        else:
            _write(human_line(event) + "\n")

    async def consume() -> int:
        from contextlib import aclosing

        seen = 0
        events = watch(
            target,
            subs.names,
            types=types or (),
            location=locations or (),
            player=players or (),
            on_subscribed=subscribed,
            on_disconnected=disconnected,
        )
        async with aclosing(events):
            async for event in events:
                show(event)
                if not isinstance(event, TailGap):
                    seen += 1
                    if count is not None and seen >= count:
                        break
        return seen

    async def work() -> int:
        import asyncio

        await announce_target(ctx, target)
        try:
            if timeout is None:
                return await consume()
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    return await consume()
            except TimeoutError:
                if deadline.expired():
                    return 0
                raise
        except _StdoutClosed:
            return 0

    run(ctx, work)
