"""Reconcile's presence join (pure logic): the set differences find exactly the players a
loop over every player found, with the same sets for each (the loop it replaced is written
out here as the reference)."""

from __future__ import annotations

import random

import pytest

from echoes_ops.operations.reconcile_recheck import join_presence
from echoes_ops.operations.tiermap import SessionBrief

LOCATIONS = ["cave", "docks", "market", "ruins"]


def reference(
    sessions: dict[int, SessionBrief], sets: list[tuple[str, list[str]]]
) -> tuple[list[int], dict[int, list[str]], int]:
    """Every member of every set by player, then every player checked one by one."""
    member_locations: dict[int, list[str]] = {}
    for loc, members in sets:
        for member in members:
            if member.isdigit() and member.isascii():
                member_locations.setdefault(int(member), []).append(loc)
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
    counted = sum(len(v) for v in member_locations.values())
    return (
        sorted(out),
        {cid: member_locations[cid] for cid in out if cid in member_locations},
        counted,
    )


def tier(seed: int) -> tuple[dict[int, SessionBrief], list[tuple[str, list[str]]]]:
    rng = random.Random(seed)
    sessions: dict[int, SessionBrief] = {}
    members: dict[str, list[str]] = {loc: [] for loc in LOCATIONS}
    for cid in range(1, 400):
        roll = rng.random()
        location = rng.choice([*LOCATIONS, "nowhere", None])
        worker = rng.choice(["w1", "w2", None])
        if roll < 0.85:
            sessions[cid] = SessionBrief(location, worker, 1.7e9, 1800)
        if location in members and rng.random() < 0.9:
            members[location].append(str(cid))  # where the session says (mostly)
        if rng.random() < 0.08:
            members[rng.choice(LOCATIONS)].append(str(cid))  # a second set, or a wrong one
    for loc in LOCATIONS:
        if rng.random() < 0.3:
            members[loc].append(rng.choice(["bot", "", "-3", "٣", "0"]))  # not ids
        members[loc] = list(dict.fromkeys(members[loc]))  # a set holds a member once
    return sessions, sorted(members.items())


@pytest.mark.parametrize("seed", range(40))
def test_the_join_finds_what_a_loop_over_every_player_finds(seed: int) -> None:
    sessions, sets = tier(seed)
    expected, locations, counted = reference(sessions, sets)
    found = join_presence(sessions, sets)
    assert expected, "the generated tier has drift to find"
    assert found.suspects == expected
    assert found.member_locations == locations
    assert found.members == counted


def test_a_tier_without_drift_has_no_suspects() -> None:
    sessions = {cid: SessionBrief("cave", "w1", 1.7e9, 1800) for cid in range(1, 50)}
    sessions[50] = SessionBrief("docks", None, 1.7e9, 1800)  # offline: in no set, not missing
    found = join_presence(sessions, [("cave", [str(c) for c in range(1, 50)]), ("docks", [])])
    assert found.suspects == []
    assert found.member_locations == {}
    assert found.sizes == {"cave": 49, "docks": 0}


def test_the_cycle_collector_is_paused_for_the_block_and_restored() -> None:
    import gc

    from echoes_ops.cycles import no_cycle_collection

    assert gc.isenabled()
    with no_cycle_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), no_cycle_collection():
        raise RuntimeError("inside")
    assert gc.isenabled()  # back on after an error too
    gc.disable()
    try:
        with no_cycle_collection():
            pass
        assert not gc.isenabled()  # left as it was: off
    finally:
        gc.enable()
