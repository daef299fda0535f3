"""Reconcile's confirmation on one server (docs/design.md, decision 5): the keyspace walk
reads sessions and presence sets at different moments, so a player who moved meanwhile
looks misplaced; the players whose session and sets disagree are re-read at one instant
(``PRESENCE_RECHECK``) and only what is still inconsistent then counts as drift. On Redis
Cluster a player's keys lie in different slots; see ``reconcile_cluster.py`` instead."""

from __future__ import annotations

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys, scripts
from echoes_ops.operations.drift_report import RECHECK_BATCH
from echoes_ops.operations.tiermap import SessionBrief

Seen = SessionBrief  # what the walk saw of a session; replaced by what the re-read says


def presence_suspects(
    sessions: dict[int, Seen], member_locations: dict[int, list[str]]
) -> list[int]:
    """Players whose session and location sets disagree in what the walk read."""
    out = set()
    for cid, locations in member_locations.items():
        session = sessions.get(cid)
        if session is None or len(locations) > 1 or locations[0] != session.location:
            out.add(cid)
    for cid, session in sessions.items():
        if (
            session.worker
            and session.location
            and session.location not in member_locations.get(cid, [])
        ):
            out.add(cid)
    return sorted(out)


async def recheck_presence(
    r: AnyRedis,
    sessions: dict[int, Seen],
    member_locations: dict[int, list[str]],
    suspects: list[int],
) -> None:
    """Re-read each suspect's session and memberships at one instant (``PRESENCE_RECHECK``,
    ``RECHECK_BATCH`` players per call) and replace what the walk saw with it. The walk
    reads sessions and sets at different moments, so a player who moved meanwhile looks
    misplaced; only what is still inconsistent at one instant is drift. A session that
    appeared after the walk is left to the next run."""
    script = r.register_script(scripts.PRESENCE_RECHECK)
    for start in range(0, len(suspects), RECHECK_BATCH):
        chunk = suspects[start : start + RECHECK_BATCH]
        key_list: list[str] = []
        args: list[str] = [keys.PRESENCE_PREFIX, keys.PRESENCE_SUFFIX]
        for cid in chunk:
            seen = member_locations.get(cid, [])
            key_list.append(keys.session_key(cid))
            key_list.extend(keys.presence_key(loc) for loc in seen)
            args += [str(cid), str(len(seen)), *seen]
        replies = await script(keys=key_list, args=args)
        for cid, (state, location, worker, joined) in zip(chunk, replies, strict=True):
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
