"""Sending a batch's players to Redis: one server, or per slot on Redis Cluster.

One server: calls in mode ``pairs``, each player's session and inventory judged and written
by the same call (atomic per call), sent a step of two calls at a time
(:class:`client.bulk.StepConnection`): each step is cut when the previous one's replies are
in, sized by what the calls so far cost (``StepBudget``), while this process encodes the
next batch. The players come packed in the wire protocol, so cutting a step only joins
bytes.

Redis Cluster: a call may only touch keys of one slot, and a player's two keys never share
one (the contract adds no hash tags). So a batch goes in two rounds: the sessions, grouped
by slot (mode ``sessions``; each call atomic for its slot), then the inventories of the
players whose session call said they may be written (``W`` or ``U``: no fresher or unknown
session), grouped by slot (mode ``inventories``). A worker that takes a player between the
two rounds can have its inventory replaced by the database's rows: the cache-fill window the
single-server run has between reading and writing, a few milliseconds longer
(docs/warmup.md). :func:`client.bulk.bulk` sends each call to the primary owning its slot,
all nodes in parallel, each node's calls in steps of about ``step`` players (``stepped``:
one step in flight per node, as on one server).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import Command
from echoes_ops.client.slots import slot_of
from echoes_ops.operations.warmup.encoding import (
    MEASURE_EVERY,
    MEASURE_FLAG,
    Encoded,
    PackedHead,
)

# Where the mode sits in the script's header (ARGV[8]).
MODE_AT = 7

# script calls, and how many to write per step on each node (one step in flight per node)
RunScripts = Callable[[list[Command], int], Awaitable[list[Any]]]
SendPacked = Callable[[list[bytes]], Awaitable[list[Any]]]  # calls in RESP -> replies


@dataclass
class Written:
    """What one batch's calls returned: each call's character ids and reply, and the
    inventory codes of players the session round left alone (cluster)."""

    calls: list[list[int]] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    inventories_left: str = ""
    observed: bool = False  # the calls' measured times were already given to the sizer


def _headers(header: Sequence[str], mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    head = list(header)
    head[MODE_AT] = mode
    head[MEASURE_FLAG] = "1"
    measured = tuple(head)
    head[MEASURE_FLAG] = "0"
    return measured, tuple(head)


def _slot_calls(
    sha: str,
    header: Sequence[str],
    mode: str,
    step: int,
    players: Sequence[int],
    key_of: Callable[[int], str],
    args_of: Callable[[int], list[str]],
    ids: Sequence[int],
) -> tuple[list[Command], list[list[int]]]:
    """Calls of at most ``step`` players whose keys share a slot; a call never holds one
    player twice. Returns the commands and the player indexes of each."""
    measured, plain = _headers(header, mode)
    groups: dict[int, list[int]] = {}
    for i in players:
        groups.setdefault(slot_of(key_of(i)), []).append(i)
    commands: list[Command] = []
    members: list[list[int]] = []
    for group in groups.values():
        call: list[int] = []
        seen: set[int] = set()
        for i in [*group, -1]:
            if i >= 0 and len(call) < step and ids[i] not in seen:
                call.append(i)
                seen.add(ids[i])
                continue
            if call:
                head = plain if len(commands) % MEASURE_EVERY else measured
                keys = [key_of(j) for j in call]
                args = [a for j in call for a in args_of(j)]
                commands.append(("EVALSHA", sha, len(keys), *keys, *head, *args))
                members.append(call)
            call, seen = ([i], {ids[i]}) if i >= 0 else ([], set())
    return commands, members


def _per_step(step: int, members: list[list[int]]) -> int:
    """Calls per step on a node: about ``step`` players (a call on a cluster holds the
    players of one slot, usually one or two, each call tens of microseconds)."""
    players = sum(len(m) for m in members)
    return max(1, step * len(members) // max(players, 1))


async def write_cluster(
    run: RunScripts,
    encoded: Encoded,
    sha: str,
    header: Sequence[str],
    step: int,
    fields: int,
) -> Written:
    """The batch on Redis Cluster: sessions per slot, then the inventories they allow."""
    ids, names, args, width = encoded.ids, encoded.keys, encoded.args, encoded.keys_per_player
    starts = [*encoded.starts, len(args)]
    everyone = range(len(ids))

    def session_args(i: int) -> list[str]:
        return args[starts[i] : starts[i] + 1 + fields]

    def inventory_args(i: int) -> list[str]:
        return args[starts[i] + 1 + fields : starts[i + 1]]

    commands, members = _slot_calls(
        sha, header, "sessions", step, everyone, lambda i: names[i * width], session_args, ids
    )
    replies = list(await run(commands, _per_step(step, members)))
    written = Written(
        [[ids[i] for i in call] for call in members], replies, [len(m) for m in members]
    )
    if width == 1:
        return written
    codes = [""] * len(ids)
    for call, reply in zip(members, replies, strict=True):
        for i, code in zip(call, reply[0], strict=True):
            codes[i] = code
    allowed = [i for i in everyone if codes[i] in ("W", "U")]
    written.inventories_left = "".join(c for c in codes if c in ("F", "X"))
    commands, members = _slot_calls(
        sha, header, "inventories", step, allowed, lambda i: names[i * 2 + 1], inventory_args, ids
    )
    replies = list(await run(commands, _per_step(step, members)))
    written.calls += [[ids[i] for i in call] for call in members]
    written.replies += replies
    written.sizes += [len(m) for m in members]
    return written


async def write_stepwise(
    send: SendPacked,
    encoded: Encoded,
    heads: tuple[PackedHead, PackedHead],
    sizer: StepBudget,
    group: int = 1,
) -> Written:
    """The batch on one server, ``group`` calls in flight at a time: each group is cut when
    the previous group's replies are in, so a call that measured its server time (one in
    :data:`MEASURE_EVERY`; ``heads`` is the header with the measure flag set, and without)
    resizes the calls that follow at once. The calls are joined from the players' packed
    bytes (:meth:`Encoded.packed_call`): cutting a step costs microseconds."""
    measured, plain = heads
    written = Written(observed=True)
    ids, begin = encoded.ids, 0
    while begin < len(ids):
        step = sizer.size
        commands: list[bytes] = []
        ends: list[tuple[int, int]] = []
        while begin < len(ids) and len(commands) < group:
            head = plain if (len(written.sizes) + len(commands)) % MEASURE_EVERY else measured
            command, end = encoded.packed_call(head, begin, step)
            commands.append(command)
            ends.append((begin, end))
            begin = end
        replies = await send(commands)
        for (first, end), reply in zip(ends, replies, strict=True):
            seconds = reply[2] / 1e6
            # a call cut short (the batch's last, or at a repeated id) says nothing about
            # how far the step may grow: only its cost counts, and only when it ran long
            if reply[2] >= 0 and (end - first == step or seconds > sizer.target):
                sizer.observe(end - first, seconds)
            written.calls.append(ids[first:end])
            written.replies.append(reply)
            written.sizes.append(end - first)
    return written
