"""What each cluster node says about slots: who owns which, and which are moving.

``CLUSTER NODES`` from a node lists every node (id, address, flags, primary, config epoch,
link state, slots); its own line also marks the slots it is migrating away
(``[slot->-target]``) or importing (``[slot-<-source]``). A walk compares this before and
after it runs to know which slots moved or were moving meanwhile (client/walk.py), and the
health view reads it for roles, coverage and epochs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import primary_nodes

SLOTS = 16384


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES."""

    node_id: str
    address: str  # host:port (the bus port and hostname left off)
    flags: frozenset[str]
    primary_id: str | None  # a replica's primary
    config_epoch: int
    connected: bool
    slots: tuple[tuple[int, int], ...]  # owned ranges, inclusive
    migrating: dict[int, str] = field(default_factory=dict)  # slot -> target node id
    importing: dict[int, str] = field(default_factory=dict)  # slot -> source node id

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)


def parse_nodes(text: str) -> list[NodeLine]:
    lines: list[NodeLine] = []
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 8:
            continue
        node_id, addr, flags, primary, _ping, _pong, epoch, link = parts[:8]
        slots: list[tuple[int, int]] = []
        migrating: dict[int, str] = {}
        importing: dict[int, str] = {}
        for item in parts[8:]:
            if item.startswith("["):
                body = item.strip("[]")
                if "->-" in body:
                    slot, target = body.split("->-", 1)
                    migrating[int(slot)] = target
                elif "-<-" in body:
                    slot, source = body.split("-<-", 1)
                    importing[int(slot)] = source
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        lines.append(
            NodeLine(
                node_id=node_id,
                address=addr.split("@", 1)[0],
                flags=frozenset(flags.split(",")),
                primary_id=None if primary == "-" else primary,
                config_epoch=int(epoch),
                connected=link == "connected",
                slots=tuple(slots),
                migrating=migrating,
                importing=importing,
            )
        )
    return lines


async def node_view(node: Redis) -> list[NodeLine]:
    """CLUSTER NODES as ``node`` sees it."""
    reply = await node.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    return parse_nodes(str(reply))


@dataclass(frozen=True)
class SlotState:
    """Who owns each slot (by node id, as the primaries say) and which slots are moving."""

    owners: dict[int, str]
    moving: frozenset[int]
    # the slot's source and target while it moves: slot -> (source id, target id)
    moves: dict[int, tuple[str, str]]
    addresses: dict[str, str]  # node id -> host:port


async def slot_state(r: AnyRedis) -> SlotState | None:
    """The primaries' own view of their slots; None on one server (nothing moves)."""
    nodes = await primary_nodes(r)
    if len(nodes) == 1 and nodes[0].client is r:
        return None
    views = await asyncio.gather(*(node_view(n.client) for n in nodes))
    owners: dict[int, str] = {}
    moves: dict[int, tuple[str, str]] = {}
    addresses: dict[str, str] = {}
    for view in views:
        for line in view:
            addresses[line.node_id] = line.address
            if "myself" not in line.flags:
                continue
            for start, end in line.slots:
                for slot in range(start, end + 1):
                    owners[slot] = line.node_id
            for slot, target in line.migrating.items():
                moves[slot] = (line.node_id, target)
            for slot, source in line.importing.items():
                moves.setdefault(slot, (source, line.node_id))
    return SlotState(owners, frozenset(moves), moves, addresses)


def unstable_slots(before: SlotState | None, after: SlotState | None) -> frozenset[int]:
    """Slots that were moving at either end of a walk, or changed owner during it."""
    if before is None or after is None:
        return frozenset()
    changed = {
        slot
        for slot in set(before.owners) | set(after.owners)
        if before.owners.get(slot) != after.owners.get(slot)
    }
    return frozenset(changed | before.moving | after.moving)
