"""Helpers of the ``broadcast`` tests (test_broadcast.py, test_broadcast_countdown.py): a
listener shaped like the plan's, a catch-all subscriber, reading everything published so
far without a time window, the audit records of broadcasts, and the fixtures both use."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import redis

from echoes_ops.contract import keys
from tests.waiting import wait_until

BIN = Path(sys.executable).parent / "echoes-ops"

MARKER = "test:marker"  # not a tier channel: published by the tests only


def read_to_marker(client: redis.Redis, pubsub: redis.client.PubSub) -> list[dict]:
    """What ``pubsub`` received before a marker published now (one server delivers in
    publish order): every message published before this call, with no time window to
    guess. ``pubsub`` subscribes to MARKER or to a pattern matching it."""
    token = uuid.uuid4().hex
    client.publish(MARKER, token)
    got: list[dict] = []

    def marker_seen() -> bool:
        message = pubsub.get_message(timeout=0.05)
        if not message or message["type"] not in ("message", "pmessage"):
            return False
        if message["channel"] == MARKER:
            return bool(message["data"] == token)  # an earlier call's marker: read on
        got.append(message)
        return False

    wait_until(marker_seen, 10, "the marker published after the messages", interval=0)
    return got


class PlanListener:
    """Shaped like the plan's ``listen_for_messages`` + ``handle_redis_message``: redis-py
    pubsub, ``json.loads`` of each message, dispatch on ``type``, the plan's fields read the
    way the plan reads them (``data['payload']``, ``data['location_id']``, ...)."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(*channels, MARKER)
        for _ in [*channels, MARKER]:
            assert self.pubsub.get_message(timeout=2)["type"] == "subscribe"
        self.seen: list[tuple[str, str, dict]] = []  # (kind, channel, what a client gets)

    def handle(self, channel: str, data: dict) -> None:
        if data["type"] == "global_broadcast":
            payload = data["payload"]
            assert payload["type"] == "server_announcement"
            assert isinstance(payload["data"]["message"], str)
            self.seen.append(("global", channel, payload))
        elif channel.startswith("location:"):
            assert data["type"] == "location_update"
            location_id = data["location_id"]
            assert channel == f"location:{location_id}"
            exclude = data.get("exclude_player_id")
            assert exclude is None or isinstance(exclude, int)
            payload = data["payload"]
            assert payload["type"] == "location_update"
            assert set(payload["data"]) >= {"message", "action"}
            datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            self.seen.append(("location", channel, {**payload, "exclude": exclude}))
        elif channel.startswith("player:"):
            assert data["type"] == "personal_message"
            player_id = int(channel.split(":")[1])
            assert data["player_id"] == player_id
            self.seen.append(("player", channel, data["payload"]))
        else:
            raise AssertionError(f"unexpected message on {channel}: {data}")

    def drain(self) -> list[tuple[str, str, dict]]:
        """Every message published to the listener's channels before now."""
        for message in read_to_marker(self.client, self.pubsub):
            self.handle(message["channel"], json.loads(message["data"]))
        seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


# The fixtures both broadcast test modules use: each module names them (``env =
# broadcast_helpers.env``), so that pytest finds them there.


@pytest.fixture
def env(redis_url):
    return {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana"}


@pytest.fixture
def listener(redis_url):
    plan = PlanListener(redis_url, ["game:broadcast", "location:overpass", "player:5"])
    yield plan
    plan.close()


@pytest.fixture
def everything(redis_url):
    """A pattern subscriber on every channel: proves that nothing at all was published."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.psubscribe("*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"

    def published() -> list[dict]:
        return read_to_marker(client, pubsub)

    yield published
    pubsub.close()
    client.close()


def audit_records(sync_r, action_prefix: str = "broadcast") -> list[dict]:
    """Oldest first."""
    return [
        {
            **fields,
            "args": json.loads(fields["args"]),
            "detail": json.loads(fields["detail"] or "null"),
        }
        for _, fields in sync_r.xrange(keys.AUDIT_STREAM_KEY)
        if fields["action"].startswith(action_prefix)
    ]
