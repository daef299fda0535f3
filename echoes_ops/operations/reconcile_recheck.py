"""Reconcile's confirmation on one server (docs/design.md, decision 5): the keyspace walk
reads sessions and presence sets at different moments, so a player who moved meanwhile
looks misplaced; the players whose session and sets disagree are re-read at one instant
(``PRESENCE_RECHECK``) and only what is still inconsistent then counts as drift. On Redis
Cluster a player's keys lie in different slots; see ``reconcile_cluster.py`` instead."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echoes_ops.client.budget import StepBudget, lua_micros
from echoes_ops.client.bulk import Command, bulk, reloading
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.pacing import pacer_of
from echoes_ops.contract import keys, scripts
from echoes_ops.operations.drift_report import RECHECK_BATCH, RECHECK_FIRST
from echoes_ops.operations.tiermap import SessionBrief

Seen = SessionBrief  # what the walk saw of a session; replaced by what the re-read says


@dataclass
class Presence:
    """What the location sets say, joined with the sessions: the players whose session and
    sets disagree (``suspects``, sorted) with every set each of them is in
    (``member_locations``, by location id); the players where their session says are not
    listed one by one."""

    suspects: list[int]
    member_locations: dict[int, list[str]]
    sizes: dict[str, int]  # location id -> members that are character ids (digits)

    @property
    def members(self) -> int:
        return sum(self.sizes.values())


def join_presence(sessions: dict[int, Seen], sets: list[tuple[str, list[str]]]) -> Presence:
    """Join ``sets`` ((location id, members), sorted by location) with ``sessions``: per
    location, set differences between the members and the ids of the sessions naming it
    (C-level set operations, not a loop per player). A suspect is a member of a set its
    session does not name (no session, another location, or a second set), or a session
    held by a worker (``worker`` set) naming a location whose set lacks it. Members that
    are not digits are no character id and are left out, as before."""
    naming: dict[str | None, list[int]] = defaultdict(list)
    for cid, brief in sessions.items():
        naming[brief.location].append(cid)
    in_set: dict[str, set[int]] = {}
    odd: dict[int, list[str]] = defaultdict(list)
    for loc, names in sets:
        in_set[loc] = ids = _ids(names)
        for cid in ids.difference(naming.get(loc, ())):
            odd[cid].append(loc)  # the sets are in location order: so is each list
    missing = [
        cid
        for loc, cids in naming.items()
        if loc
        for cid in (set(cids).difference(in_set[loc]) if loc in in_set else cids)
        if sessions[cid].worker
    ]
    member_locations: dict[int, list[str]] = {}
    for cid in {*odd, *missing}:
        found = odd.get(cid, [])
        session = sessions.get(cid)
        if session is not None and session.location and cid in in_set.get(session.location, ()):
            found = sorted([*found, session.location])
        if found:
            member_locations[cid] = found
    sizes = {loc: len(ids) for loc, ids in in_set.items()}
    return Presence(sorted({*odd, *missing}), member_locations, sizes)


def _ids(names: list[str]) -> set[int]:
    """The members that are character ids (ASCII digits), as ids."""
    joined = "".join(names)
    if joined.isdigit() and joined.isascii() and all(names):
        return set(map(int, names))
    return {int(name) for name in names if name.isdigit() and name.isascii()}


async def recheck_presence(
    r: AnyRedis,
    sessions: dict[int, Seen],
    member_locations: dict[int, list[str]],
    suspects: list[int],
) -> StepBudget:
    """Re-read each suspect's session and memberships at one instant (``PRESENCE_RECHECK``)
    and replace what the walk saw with it. The walk reads sessions and sets at different
    moments, so a player who moved meanwhile looks misplaced; only what is still
    inconsistent at one instant is drift. A session that appeared after the walk is left to
    the next run.

    The calls are steps of the walk's budget (issue #16): each carries as many suspects as
    the last ones' server time says fit ``client/budget.TARGET_S`` (``RECHECK_FIRST``
    first, at most ``RECHECK_BATCH``), one at a time, paced like every walk beside the
    game's traffic. (A fixed 100 suspects a call, sent back to back, held the server
    1.6-2.4 ms a call.) A user without TIME gets calls of ``RECHECK_FIRST``. Returns the
    sizing, for reports."""
    sizer = StepBudget(size=RECHECK_FIRST, low=1, high=RECHECK_BATCH)
    if not suspects:
        return sizer
    sha = str(await r.script_load(scripts.PRESENCE_RECHECK))
    pacer = pacer_of(r)

    async def sent(calls: Sequence[Command]) -> list[Any]:
        return await bulk(r, calls, chunk=1, stepped=True, raise_on_error=False, pacer=pacer)

    at = 0
    while at < len(suspects):
        chunk = suspects[at : at + sizer.size]
        key_list: list[str] = []
        args: list[str] = [keys.PRESENCE_PREFIX, keys.PRESENCE_SUFFIX]
        for cid in chunk:
            seen = member_locations.get(cid, [])
            key_list.append(keys.session_key(cid))
            key_list.extend(keys.presence_key(loc) for loc in seen)
            args += [str(cid), str(len(seen)), *seen]
        command = ("EVALSHA", sha, len(key_list), *key_list, *args)
        (reply,) = await reloading(r, (scripts.PRESENCE_RECHECK,), sent, [command])
        if isinstance(reply, Exception):
            raise reply
        *players, spent = reply
        held = lua_micros(spent)
        if held is not None:
            sizer.observe(len(chunk), held)
        # else no TIME (an ACL without it): the calls stay at RECHECK_FIRST suspects, about
        # 0.3 ms of server time. The round trip cannot stand in: at a few suspects a call its
        # fixed part (the look, the wake-up after the pacing's wait) reads as their cost and
        # the calls shrank to one suspect each (reviewer, session 8)
        at += len(chunk)
        _take(sessions, member_locations, chunk, players)
    return sizer


def _take(
    sessions: dict[int, Seen],
    member_locations: dict[int, list[str]],
    chunk: list[int],
    players: list[Any],
) -> None:
    """What one call re-read, in place of what the walk saw."""
    for cid, (state, location, worker, joined) in zip(chunk, players, strict=True):
        if int(state) == 2:
            continue  # a key of the wrong type: keep what the walk saw
        members = str(joined).split("\n") if joined else []
        session = sessions.get(cid)
        if int(state) == 0:
            sessions.pop(cid, None)
        elif session is None:
            member_locations.pop(cid, None)  # a session newer than the walk
            continue
        else:
            session.location = str(location) or None
            session.worker = str(worker) or None
        if members:
            member_locations[cid] = members
        else:
            member_locations.pop(cid, None)
