"""Writes that were one transaction on one server, as one transaction per slot on Redis
Cluster (a MULTI/EXEC may only touch keys of one slot there).

Each slot's commands stay one MULTI/EXEC, sent through :func:`client.bulk.bulk` (which
routes a MULTI block to the node owning its slot); the whole is no longer atomic, so the
caller names the key whose group goes last (a kick removes the session after the presence
entries, so a reader never sees presence without a session from it) and documents what a
reader can see in between (docs/design.md, "Guarantees per topology").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from echoes_ops.client.bulk import Command, bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.slots import command_slot, group_commands, slot_of


async def transactions_per_slot(
    r: AnyRedis, commands: Sequence[Command], *, last_key: str | None = None
) -> list[Any]:
    """Run ``commands`` as one MULTI/EXEC per slot (slot of each command's first key, the
    order kept within a slot); the group holding ``last_key`` runs after all others.
    Returns each command's reply, in the order given. An error reply of a command inside a
    transaction is raised once its wave is done, before the next wave starts (so the group of
    ``last_key`` never runs after a group that failed)."""
    groups = group_commands(list(enumerate(commands)), slot=lambda item: command_slot(item[1]))
    final = slot_of(last_key) if last_key is not None else None
    replies: list[Any] = [None] * len(commands)
    for wave in (
        [g for s, g in groups.items() if s != final],
        [g for s, g in groups.items() if s == final],
    ):
        if not wave:
            continue
        sent: list[Command] = []
        spans: list[list[int]] = []
        for group in wave:
            sent.append(("MULTI",))
            sent.extend(command for _, command in group)
            sent.append(("EXEC",))
            spans.append([index for index, _ in group])
        answers = await bulk(r, sent)
        at = 0
        for indexes in spans:
            at += len(indexes) + 2  # MULTI, QUEUED..., EXEC
            executed = answers[at - 1]
            if not isinstance(executed, list) or len(executed) != len(indexes):
                raise ResponseError(f"a transaction was not executed (EXEC answered {executed!r})")
            for index, reply in zip(indexes, executed, strict=True):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
    return replies
