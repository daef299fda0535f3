"""Pub/sub envelopes: echoes_ops/contract/envelopes.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from echoes_ops.contract import envelopes as env
from echoes_ops.errors import DecodeError, InvalidIdError

ANNOUNCEMENT = {"type": "server_announcement", "data": {"message": "Maintenance in 5 min"}}
PICKUP = {
    "type": "location_update",
    "data": {"message": "Jocaru picked up 3x Iron Ore", "action": "item_picked_up"},
    "timestamp": "2025-11-09T17:52:00Z",
}
COMBAT = {
    "type": "combat_update",
    "data": {"message": "You dealt 12 damage!", "combat_over": False},
}


def _plan_listener(data: str) -> dict[str, Any]:
    """What the plan's listen_for_messages does with message['data']."""
    parsed: dict[str, Any] = json.loads(data)
    assert isinstance(parsed["type"], str)
    return parsed


# -- exact shapes -----------------------------------------------------------------------


def test_global_broadcast_shape() -> None:
    envelope = env.global_broadcast(ANNOUNCEMENT, stamp=False)
    assert envelope.channel == "game:broadcast"
    assert envelope.to_dict() == {"type": "global_broadcast", "payload": ANNOUNCEMENT}


def test_location_update_shape() -> None:
    envelope = env.location_update("overpass", PICKUP, exclude_player_id=5, stamp=False)
    assert envelope.channel == "location:overpass"
    assert envelope.to_dict() == {
        "type": "location_update",
        "location_id": "overpass",
        "exclude_player_id": 5,
        "payload": PICKUP,
    }


def test_location_update_without_exclusion_keeps_the_field_as_null() -> None:
    body = env.location_update("ruins", PICKUP, stamp=False).to_dict()
    assert "exclude_player_id" in body
    assert body["exclude_player_id"] is None


def test_personal_message_shape() -> None:
    envelope = env.personal_message(5, COMBAT, stamp=False)
    assert envelope.channel == "player:5"
    assert envelope.to_dict() == {"type": "personal_message", "player_id": 5, "payload": COMBAT}


def test_personal_message_normalises_the_player_id() -> None:
    envelope = env.personal_message("5", COMBAT, stamp=False)  # type: ignore[arg-type]
    assert envelope.to_dict()["player_id"] == 5
    assert envelope.channel == "player:5"


def test_worker_join_shape() -> None:
    envelope = env.worker_event("worker_join", "worker-3")
    body = envelope.to_dict()
    assert envelope.channel == "game:workers"
    assert body["type"] == "worker_join"
    assert body["worker_id"] == "worker-3"
    assert isinstance(body["timestamp"], str)
    assert body["timestamp"].endswith("Z")
    assert set(body) <= {"type", "worker_id", "timestamp", "sent_at", "msg_id"}


@pytest.mark.parametrize("kind", ["worker_leave", "config_changed"])
def test_other_worker_events_go_to_the_workers_channel(kind: str) -> None:
    envelope = env.worker_event(kind, "w1", reason="shutdown")  # type: ignore[arg-type]
    body = envelope.to_dict()
    assert envelope.channel == "game:workers"
    assert body["type"] == kind
    assert body["reason"] == "shutdown"


def test_worker_event_extra_never_overrides_contract_fields() -> None:
    body = env.worker_event("worker_join", "w1", type="evil", worker_id_x=1).to_dict()
    assert body["type"] == "worker_join"
    assert body["worker_id"] == "w1"


# -- added fields -----------------------------------------------------------------------


def test_stamped_envelopes_only_add_sent_at_and_msg_id() -> None:
    before = time.time()
    envelope = env.location_update("overpass", PICKUP, exclude_player_id=5, msg_id="abc")
    after = time.time()
    body = envelope.to_dict()
    plan_shape = env.location_update("overpass", PICKUP, exclude_player_id=5, stamp=False)
    assert {k: v for k, v in body.items() if k not in {"sent_at", "msg_id"}} == (
        plan_shape.to_dict()
    )
    assert before <= body["sent_at"] <= after
    assert body["msg_id"] == "abc"


def test_stamped_global_broadcast_and_personal_message_add_sent_at() -> None:
    for envelope in (env.global_broadcast(ANNOUNCEMENT), env.personal_message(5, COMBAT)):
        body = envelope.to_dict()
        assert isinstance(body["sent_at"], float)
        assert body["payload"] == envelope.payload


def test_new_msg_id_is_unique_hex() -> None:
    ids = {env.new_msg_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(int(i, 16) >= 0 for i in ids)


# -- invalid ids ------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["", "a:b", "a b", "loc*", "{x}"])
def test_location_update_rejects_bad_location_ids(location: str) -> None:
    with pytest.raises(InvalidIdError):
        env.location_update(location, PICKUP)


@pytest.mark.parametrize("player", [0, -1, "abc", True, None])
def test_personal_message_rejects_bad_player_ids(player: object) -> None:
    with pytest.raises(InvalidIdError):
        env.personal_message(player, COMBAT)  # type: ignore[arg-type]


def test_location_update_rejects_bad_exclude_player_id() -> None:
    with pytest.raises(InvalidIdError):
        env.location_update("overpass", PICKUP, exclude_player_id=0)


def test_worker_event_rejects_bad_worker_id() -> None:
    with pytest.raises(InvalidIdError):
        env.worker_event("worker_join", "w 1")


# -- serialisation and decoding ---------------------------------------------------------


ENVELOPES = [
    env.global_broadcast(ANNOUNCEMENT),
    env.global_broadcast({"type": "x", "data": {"emoji": "🔥", "text": "Épée"}}, stamp=False),
    env.location_update("overpass", PICKUP, exclude_player_id=5, msg_id="m1"),
    env.location_update("overpass", PICKUP, stamp=False),
    env.personal_message(5, COMBAT, msg_id="m2"),
    env.worker_event("worker_join", "worker-3"),
    env.worker_event("config_changed", None, flag="REDIS_ENABLED", value=False),
]


@pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: e.type)
def test_to_json_is_what_a_plan_listener_parses(envelope: env.Envelope) -> None:
    parsed = _plan_listener(envelope.to_json())
    assert parsed == envelope.to_dict()


@pytest.mark.parametrize("envelope", ENVELOPES, ids=lambda e: e.type)
def test_decode_message_round_trips(envelope: env.Envelope) -> None:
    text = envelope.to_json()
    assert env.decode_message(envelope.channel, text) == envelope
    assert env.decode_message(envelope.channel.encode(), text.encode()) == envelope


def test_to_json_is_compact_and_keeps_non_ascii() -> None:
    text = env.global_broadcast({"message": "🔥 Épée"}, stamp=False).to_json()
    assert text == '{"type":"global_broadcast","payload":{"message":"🔥 Épée"}}'


def test_decode_plan_published_messages() -> None:
    # What the plan's publish_to_location / publish_to_player put on the wire.
    loc = json.dumps(
        {
            "type": "location_update",
            "location_id": "overpass",
            "exclude_player_id": None,
            "payload": PICKUP,
        }
    )
    decoded = env.decode_message("location:overpass", loc)
    assert decoded.type == env.LOCATION_UPDATE
    assert decoded.location_id == "overpass"
    assert decoded.exclude_player_id is None
    assert decoded.payload == PICKUP
    assert decoded.sent_at is None

    personal = json.dumps({"type": "personal_message", "player_id": 5, "payload": COMBAT})
    decoded = env.decode_message(b"player:5", personal)
    assert decoded.channel == "player:5"
    assert decoded.player_id == 5
    assert decoded.payload == COMBAT


def test_decode_keeps_unknown_fields_in_extra() -> None:
    decoded = env.decode_message("game:workers", '{"type":"worker_join","region":"eu","n":2}')
    assert decoded.extra == {"region": "eu", "n": 2}
    assert decoded.payload == {}


def test_decode_message_without_payload_has_empty_payload() -> None:
    decoded = env.decode_message("game:broadcast", '{"type":"global_broadcast","payload":null}')
    assert decoded.payload == {}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("not json", "not JSON"),
        ("{", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        ("", "not JSON"),
        ("[]", "no 'type'"),
        ('"global_broadcast"', "no 'type'"),
        ("{}", "no 'type'"),
        ('{"payload": {}}', "no 'type'"),
        ('{"type": 5}', "no 'type'"),
        ('{"type": "global_broadcast", "payload": "hello"}', "not an object"),
        ('{"type": "global_broadcast", "payload": [1, 2]}', "not an object"),
        ('{"type": "personal_message", "player_id": "abc", "payload": {}}', "player_id"),
        ('{"type": "location_update", "exclude_player_id": [], "payload": {}}', "exclude_player"),
    ],
)
def test_decode_message_rejects_non_envelopes(data: str | bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        env.decode_message("game:broadcast", data)
    assert "game:broadcast" in str(info.value)


def test_oversize_messages_are_refused_by_to_json() -> None:
    envelope = env.global_broadcast({"blob": "x" * env.MAX_MESSAGE_BYTES}, stamp=False)
    with pytest.raises(DecodeError, match=str(env.MAX_MESSAGE_BYTES)):
        envelope.to_json()


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    # 4-byte emoji: well under the limit in characters, over it in bytes.
    blob = "🔥" * (env.MAX_MESSAGE_BYTES // 4 + 1)
    assert len(blob) < env.MAX_MESSAGE_BYTES
    with pytest.raises(DecodeError):
        env.global_broadcast({"blob": blob}, stamp=False).to_json()


def test_messages_just_under_the_limit_are_accepted() -> None:
    overhead = len(env.global_broadcast({"blob": ""}, stamp=False).to_json())
    blob = "x" * (env.MAX_MESSAGE_BYTES - overhead)
    text = env.global_broadcast({"blob": blob}, stamp=False).to_json()
    assert len(text.encode()) == env.MAX_MESSAGE_BYTES
