"""The player session hash: echoes_ops/contract/session.py."""

from __future__ import annotations

import dataclasses

import pytest

from echoes_ops.contract.session import SESSION_FIELDS, Session
from echoes_ops.errors import InvalidIdError

NOW = 1_762_710_700.0

# Exactly what the plan's set_player_session writes: every value a string, the heartbeat
# from asyncio.get_event_loop().time(), Python's str(None) for missing values.
PLAN_HASH = {
    "worker_id": "worker-1",
    "websocket_connected": "true",
    "location_id": "overpass",
    "username": "Jocaru",
    "hp": "85",
    "max_hp": "100",
    "stamina": "42",
    "max_stamina": "50",
    "level": "12",
    "xp": "2450",
    "last_movement_time": "1762710676.592",
    "in_combat": "false",
    "last_heartbeat": "5234.123",
    "party_id": "None",
    "guild": "Ashwalkers",
}


def test_decode_plan_hash_fields() -> None:
    session = Session.decode(5, PLAN_HASH, now=NOW)
    assert session.character_id == 5
    assert session.worker_id == "worker-1"
    assert session.websocket_connected is True
    assert session.location_id == "overpass"
    assert session.username == "Jocaru"
    assert (session.hp, session.max_hp) == (85, 100)
    assert (session.stamina, session.max_stamina) == (42, 50)
    assert (session.level, session.xp) == (12, 2450)
    assert session.last_movement_time == pytest.approx(1762710676.592)
    assert session.in_combat is False


def test_decode_plan_loop_clock_heartbeat_is_unknown_with_a_problem() -> None:
    session = Session.decode(5, PLAN_HASH, now=NOW)
    assert session.last_heartbeat is None
    assert session.heartbeat_age(NOW) is None
    assert len(session.problems) == 1
    assert session.problems[0].startswith("last_heartbeat:")
    assert "unknown" in session.problems[0]


def test_decode_keeps_unknown_fields_in_extra() -> None:
    session = Session.decode(5, PLAN_HASH, now=NOW)
    assert dict(session.extra) == {"party_id": "None", "guild": "Ashwalkers"}


@pytest.mark.parametrize("field", [f for f in SESSION_FIELDS if f != "last_heartbeat"])
def test_decode_none_strings_are_missing_values_not_problems(field: str) -> None:
    session = Session.decode(5, {field: "None"}, now=NOW)
    assert getattr(session, field) is None
    assert session.problems == ()


def test_decode_none_heartbeat_is_missing_without_a_problem() -> None:
    for raw in ("None", "", "null"):
        session = Session.decode(5, {"last_heartbeat": raw}, now=NOW)
        assert session.last_heartbeat is None
        assert session.problems == ()


def test_decode_plan_numbers_as_float_text() -> None:
    session = Session.decode(5, {"hp": "85.0", "level": " 12 ", "in_combat": "True"}, now=NOW)
    assert session.hp == 85
    assert session.level == 12
    assert session.in_combat is True
    assert session.problems == ()


def test_decode_wall_clock_heartbeat() -> None:
    session = Session.decode(5, {"last_heartbeat": "1762710690.5"}, now=NOW)
    assert session.last_heartbeat == 1762710690.5
    assert session.problems == ()
    assert session.heartbeat_age(NOW) == pytest.approx(9.5)


@pytest.mark.parametrize("raw", ["garbage", "99999999999"])
def test_decode_unusable_heartbeats_are_unknown(raw: str) -> None:
    session = Session.decode(5, {"last_heartbeat": raw}, now=NOW)
    assert session.last_heartbeat is None
    assert any(p.startswith("last_heartbeat:") for p in session.problems)


def test_decode_undecodable_values_become_none_with_problems_naming_the_field() -> None:
    raw = {"hp": "lots", "in_combat": "maybe", "level": "1.5", "max_hp": "100"}
    session = Session.decode(5, raw, now=NOW)
    assert session.hp is None
    assert session.in_combat is None
    assert session.level is None
    assert session.max_hp == 100
    fields = sorted(p.split(":", 1)[0] for p in session.problems)
    assert fields == ["hp", "in_combat", "level"]


def test_decode_bytes_keys_and_values() -> None:
    raw = {k.encode(): v.encode() for k, v in PLAN_HASH.items()}
    assert Session.decode(5, raw, now=NOW) == Session.decode(5, PLAN_HASH, now=NOW)


def test_decode_undecodable_bytes_does_not_raise() -> None:
    session = Session.decode(5, {b"username": b"J\xffcaru", b"hp": b"\xff"}, now=NOW)
    assert session.username is not None
    assert session.hp is None
    assert session.problems


def test_decode_empty_hash() -> None:
    session = Session.decode(5, {}, now=NOW)
    assert session == Session(character_id=5)


# -- encoding ---------------------------------------------------------------------------


def _full_session(**changes: object) -> Session:
    base = Session(
        character_id=5,
        worker_id="worker-1",
        websocket_connected=True,
        location_id="overpass",
        username="Jocaru",
        hp=85,
        max_hp=100,
        stamina=42,
        max_stamina=50,
        level=12,
        xp=2450,
        last_movement_time=1762710676.592,
        in_combat=False,
        last_heartbeat=1762710690.25,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_encode_writes_contract_strings() -> None:
    assert _full_session().encode() == {
        "worker_id": "worker-1",
        "websocket_connected": "true",
        "location_id": "overpass",
        "username": "Jocaru",
        "hp": "85",
        "max_hp": "100",
        "stamina": "42",
        "max_stamina": "50",
        "level": "12",
        "xp": "2450",
        "last_movement_time": "1762710676.592",
        "in_combat": "false",
        "last_heartbeat": "1762710690.25",
    }


def test_encode_leaves_out_missing_values_and_never_writes_none() -> None:
    encoded = Session(character_id=5, location_id="overpass", hp=0).encode()
    assert encoded == {"location_id": "overpass", "hp": "0"}
    assert "None" not in encoded.values()


def test_encode_keeps_extra_fields_without_overriding_known_ones() -> None:
    session = _full_session(extra={"guild": "Ashwalkers", "hp": "1"})
    encoded = session.encode()
    assert encoded["guild"] == "Ashwalkers"
    assert encoded["hp"] == "85"


def test_encode_after_decoding_a_plan_hash_never_writes_none() -> None:
    encoded = Session.decode(5, PLAN_HASH, now=NOW).encode()
    assert "None" not in encoded.values()


@pytest.mark.parametrize(
    "changes",
    [
        {"location_id": "bad location"},
        {"location_id": "a:b"},
        {"location_id": "loc*"},
        {"worker_id": "w{1}"},
        {"worker_id": ""},
        {"character_id": 0},
        {"character_id": -1},
    ],
)
def test_encode_is_strict_about_ids(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidIdError):
        _full_session(**changes).encode()


def test_encode_decode_round_trip() -> None:
    session = _full_session()
    assert Session.decode(5, session.encode(), now=NOW) == session


def test_encode_decode_round_trip_with_missing_fields_and_extra() -> None:
    session = Session(character_id=9, location_id="ruins", in_combat=True, extra={"x": "1"})
    assert Session.decode(9, session.encode(), now=NOW) == session


def test_heartbeat_age_never_negative() -> None:
    session = _full_session(last_heartbeat=NOW + 5)
    assert session.heartbeat_age(NOW) == 0.0
    assert _full_session(last_heartbeat=NOW - 60).heartbeat_age(NOW) == 60.0
    assert _full_session(last_heartbeat=None).heartbeat_age(NOW) is None
