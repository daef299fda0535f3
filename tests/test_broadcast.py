"""``broadcast``: the plan's envelopes as the plan's listener reads them, refusals that
publish nothing, dry runs, the countdown and its Ctrl-C (real redis-server)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.operations.broadcast import (
    MAX_MESSAGE_CHARS,
    BroadcastArgumentError,
    countdown_steps,
    parse_data,
    parse_duration,
    say_duration,
)
from tests.cli_helpers import cli
from tests.runtime_helpers import make_worker, session
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(60)
BIN = Path(sys.executable).parent / "echoes-ops"


@pytest.fixture
def env(redis_url):
    return {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana"}


@pytest.fixture
def static_cache(sync_r):
    """A loaded static cache with two locations (what preload writes, enough for the check)."""
    for loc in ("overpass", "ruins"):
        sync_r.hset(keys.location_cache_key(loc), mapping={"id": loc, "name": loc.title()})


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


# -- the plan's listener parses each broadcast ---------------------------------------------


def test_plans_listener_parses_each_broadcast(env, static_cache, listener, sync_r):
    out = cli("broadcast", "global", "Server maintenance in 5 minutes", "--yes", "--json", env=env)
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["receivers"] == 1  # the listener
    envelope = report["envelope"]
    assert envelope["payload"] == {
        "type": "server_announcement",
        "data": {"message": "Server maintenance in 5 minutes"},
    }
    datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00"))

    out = cli(
        "broadcast", "location", "overpass", "The bridge shakes.", "--exclude", "7",
        "--action", "bridge_event", "--json", env=env,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["receivers"] == 1

    out = cli(
        "broadcast", "player", "5", "A gift for you", "--type", "item_update",
        "--data", '{"item": "bandage", "quantity": 2}', "--json", env=env,
    )  # fmt: skip
    assert out.code == 0, out.stderr

    out = cli("broadcast", "player", "5", "Plain note", env=env)
    assert out.code == 0, out.stderr
    assert "1 subscriber(s) received it" in out.stdout

    seen = listener.drain()
    assert [kind for kind, _, _ in seen] == ["global", "location", "player", "player"]
    _, _, announcement = seen[0]
    assert announcement["data"]["message"] == "Server maintenance in 5 minutes"
    _, channel, update = seen[1]
    assert channel == "location:overpass"
    assert update["data"] == {"message": "The bridge shakes.", "action": "bridge_event"}
    assert update["exclude"] == 7
    _, channel, gift = seen[2]
    assert channel == "player:5"
    assert gift == {
        "type": "item_update",
        "data": {"message": "A gift for you", "item": "bandage", "quantity": 2},
    }
    assert seen[3][2] == {"type": "system_message", "data": {"message": "Plain note"}}

    records = audit_records(sync_r)
    assert [(r["action"], r["result"], r["dry_run"]) for r in records] == [
        ("broadcast.global", "ok", "false"),
        ("broadcast.location", "ok", "false"),
        ("broadcast.player", "ok", "false"),
        ("broadcast.player", "ok", "false"),
    ]
    assert records[0]["operator"] == "dana"
    assert records[0]["detail"]["receivers"] == 1
    assert records[1]["args"]["location"] == "overpass"


async def test_reference_workers_route_operator_broadcasts(redis_url, static_cache):
    """Simulated workers put each broadcast in the right players' inboxes."""
    env = {"REDIS_URL": redis_url}
    a = make_worker(redis_url, "wa", location_ids=["overpass", "ruins"])
    b = make_worker(redis_url, "wb", location_ids=["overpass", "ruins"])
    await a.start()
    await b.start()
    try:
        await a.connect_player(session(5, "overpass"))
        await b.connect_player(session(6, "overpass"))
        await b.connect_player(session(7, "ruins"))

        def inbox(w, cid):
            return [
                (d.envelope.type, d.envelope.payload["data"]["message"])
                for d in w.connections[cid].inbox
            ]

        for args in (
            ("broadcast", "global", "Hello all", "--yes"),
            ("broadcast", "location", "overpass", "Overpass only", "--exclude", "6"),
            ("broadcast", "player", "7", "Just you"),
        ):
            out = await asyncio.to_thread(cli, *args, env=env)
            assert out.code == 0, out.stderr
        # a marker after the broadcasts: one server delivers to each worker's connection in
        # publish order, so once every inbox ends with it nothing sent before is on its way
        await a.tier.publish_global({"type": "server_announcement", "data": {"message": "end"}})
        marker = ("global_broadcast", "end")
        await eventually(
            lambda: all(inbox(w, c)[-1:] == [marker] for w, c in ((a, 5), (b, 6), (b, 7)))
        )
        assert inbox(a, 5) == [
            ("global_broadcast", "Hello all"),
            ("location_update", "Overpass only"),
            marker,
        ]
        assert inbox(b, 6) == [("global_broadcast", "Hello all"), marker]  # not the update
        assert inbox(b, 7) == [
            ("global_broadcast", "Hello all"),
            ("personal_message", "Just you"),
            marker,
        ]
    finally:
        for w in (a, b):
            await w.stop()
            await w.r.aclose()


# -- refusals publish nothing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("location", "overpas", "hi"), ExitCode.USAGE, "did you mean overpass"),
        (("location", "nowhere", "hi"), ExitCode.USAGE, "unknown location 'nowhere'"),
        (("location", "overpass", "hi", "--action", "two words"), ExitCode.USAGE, "action"),
        (("player", "5", "hi", "--data", "{not json"), ExitCode.USAGE, "not valid JSON"),
        (("player", "5", "hi", "--data", "[1, 2]"), ExitCode.USAGE, "JSON object"),
        (("player", "5", "hi", "--data", '"text"'), ExitCode.USAGE, "JSON object"),
        (("player", "5", "hi", "--data", '{"message": "x"}'), ExitCode.USAGE, "'message'"),
        (("player", "5", "hi", "--data", '{"a": NaN}'), ExitCode.USAGE, "NaN"),
        (("player", "5", "hi", "--data", '{"a": "x\\u001b[2J"}'), ExitCode.USAGE, "U+001B"),
        (("player", "5", "hi", "--type", "bad type"), ExitCode.USAGE, "type"),
        (("player", "5", "x" * (MAX_MESSAGE_CHARS + 1)), ExitCode.USAGE, "the limit is 500"),
        (("player", "5", "line one\nline two"), ExitCode.USAGE, "U+000A"),
        (("location", "overpass", "bell\x07"), ExitCode.USAGE, "U+0007"),
        (("global", "\x1b[31mred", "--yes"), ExitCode.USAGE, "U+001B"),
        (("global", "evil \u202egnp.exe", "--yes"), ExitCode.USAGE, "U+202E"),
        (("global", "   ", "--yes"), ExitCode.USAGE, "empty"),
        (("global", "M", "--in", "5x", "--yes"), ExitCode.USAGE, "duration"),
        (("global", "M", "--every", "1m", "--yes"), ExitCode.USAGE, "--every needs --in"),
        (("global", "M", "--in", "1s", "--every", "2s", "--yes"), ExitCode.USAGE, "--every"),
        (("global", "M", "--in", "1h", "--every", "1s", "--yes"), ExitCode.USAGE, "limit"),
        (("player", "0", "hi"), ExitCode.CONFIG, "positive integer"),
    ],
)
def test_refusals_publish_nothing_and_are_audited(
    env, static_cache, everything, sync_r, args, code, words
):
    out = cli("broadcast", *args, env=env)
    assert out.code == code, (out.stdout, out.stderr)
    assert words in out.one_error_line()
    assert everything() == []
    records = audit_records(sync_r)
    assert len(records) == 1
    assert records[0]["result"] == "failed"
    assert words in records[0]["detail"]["error"]


def test_empty_static_cache_is_said(env, everything, sync_r):
    out = cli("broadcast", "location", "overpass", "hi", env=env)
    assert out.code == ExitCode.CONFIG
    line = out.one_error_line()
    assert "static cache is empty" in line
    assert "echoes-ops preload" in line
    assert everything() == []
    assert audit_records(sync_r)[0]["result"] == "failed"


def test_global_asks_for_confirmation(env, everything, sync_r):
    out = cli("broadcast", "global", "Hello", env=env)  # no terminal, no --yes
    assert out.code == ExitCode.USAGE
    assert "--yes" in out.one_error_line()
    assert everything() == []


# -- dry run ------------------------------------------------------------------------------


def test_dry_run_publishes_nothing_and_counts_subscribers(env, static_cache, redis_url, sync_r):
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(3)]
    subs = [c.pubsub() for c in clients]
    subs[0].subscribe("location:overpass")
    subs[1].subscribe("location:overpass")
    subs[2].psubscribe("location:*")
    for s in subs:
        assert s.get_message(timeout=2) is not None
    try:
        out = cli("broadcast", "location", "overpass", "Quiet", "--dry-run", "--json", env=env)
        assert out.code == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["dry_run"] is True
        assert report["receivers"] is None
        assert report["audience"] == {"channel_subscribers": 2, "patterns": 1, "sharded": False}
        assert report["envelope"]["payload"]["data"]["message"] == "Quiet"

        human = cli("broadcast", "location", "overpass", "Quiet", "--dry-run", env=env)
        assert "dry run: nothing published" in human.stdout
        assert "through 2 worker subscription(s) to location:overpass" in human.stdout
        assert "up to 1 pattern subscription(s)" in human.stdout
        printed = json.loads(human.stdout.splitlines()[1])  # the exact envelope
        assert printed["type"] == "location_update"

        glob = cli("broadcast", "global", "Quiet", "--dry-run", "--json", env=env)  # no --yes
        assert glob.code == 0, glob.stderr
        assert json.loads(glob.stdout)["audience"]["channel_subscribers"] == 0

        # nothing was published: a marker published now is the first message each
        # subscriber gets (one server delivers in publish order)
        sync_r.publish("location:overpass", "marker")
        for s in subs:
            assert (s.get_message(timeout=5) or {}).get("data") == "marker"
        records = audit_records(sync_r)
        assert [(r["result"], r["dry_run"]) for r in records] == [("ok", "true")] * 3

        # after publishing: PUBLISH's own count (two channel + one pattern subscriber)
        sent = cli("broadcast", "location", "overpass", "Loud", "--json", env=env)
        assert json.loads(sent.stdout)["receivers"] == 3
    finally:
        for s, c in zip(subs, clients, strict=True):
            s.close()
            c.close()


# -- countdown ----------------------------------------------------------------------------


def test_countdown_sends_each_step(env, listener, sync_r):
    started = time.monotonic()
    out = cli("broadcast", "global", "Maintenance", "--in", "2s", "--every", "1s", "--yes", env=env)
    elapsed = time.monotonic() - started
    assert out.code == 0, out.stderr
    assert 1.9 <= elapsed < 5
    assert "[3/3] sent 'Maintenance'" in out.stdout
    # the players reached are counted once (a keyspace walk), after the first step
    assert "[1/3] sent 'Maintenance in 2 seconds' for 0 players (0 connections)" in out.stdout
    assert "[2/3] sent 'Maintenance in 1 second': " in out.stdout
    messages = [payload["data"]["message"] for _, _, payload in listener.drain()]
    assert messages == ["Maintenance in 2 seconds", "Maintenance in 1 second", "Maintenance"]
    (record,) = audit_records(sync_r)
    assert record["result"] == "ok"
    assert record["args"]["in"] == "2s"
    assert record["detail"]["planned"] == 3
    assert [s["message"] for s in record["detail"]["sent"]] == messages


def test_countdown_dry_run_lists_the_steps(env, everything):
    out = cli(
        "broadcast", "global", "Maintenance", "--in", "5m", "--every", "1m", "--dry-run", "--json",
        env=env,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert [s["message"] for s in report["countdown"]] == [
        "Maintenance in 5 minutes",
        "Maintenance in 4 minutes",
        "Maintenance in 3 minutes",
        "Maintenance in 2 minutes",
        "Maintenance in 1 minute",
        "Maintenance",
    ]
    assert everything() == []


def test_countdown_ctrl_c_stops_cleanly_and_is_audited(redis_url, sync_r, listener):
    env = {**os.environ, "REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "erin"}
    proc = subprocess.Popen(
        [str(BIN), "broadcast", "global", "Restart", "--in", "20s", "--every", "1s", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got: list[str] = []

        def two_announcements() -> bool:
            got.extend(p["data"]["message"] for _, _, p in listener.drain())
            return len(got) >= 2

        wait_until(two_announcements, 15, "the countdown's first two announcements", interval=0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    got += [p["data"]["message"] for _, _, p in listener.drain()]  # it has exited: all in
    assert got[:2] == ["Restart in 20 seconds", "Restart in 19 seconds"]
    assert "Restart" not in got  # the final message never went out
    (record,) = audit_records(sync_r)
    assert record["result"] == "interrupted"
    assert record["operator"] == "erin"
    assert record["detail"]["planned"] == 21
    assert [s["message"] for s in record["detail"]["sent"]] == got
    assert f"[{len(got)}/21] sent" in stdout


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2.5s", 2.5), ("45", 45)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-1s", "0", "0s", "1h-5m", "inf", "nan"])
def test_parse_duration_refuses(text):
    with pytest.raises(BroadcastArgumentError):
        parse_duration(text)


def test_say_duration():
    assert say_duration(300) == "5 minutes"
    assert say_duration(60) == "1 minute"
    assert say_duration(90) == "1 minute 30 seconds"
    assert say_duration(3600) == "1 hour"
    assert say_duration(1) == "1 second"
    assert say_duration(0.5) == "0.5 seconds"


def test_countdown_steps_with_an_uneven_step():
    steps = countdown_steps("Down", 300, 120)
    assert [(s.at, s.message) for s in steps] == [
        (0, "Down in 5 minutes"),
        (120, "Down in 3 minutes"),
        (240, "Down in 1 minute"),
        (300, "Down"),
    ]
    assert [s.message for s in countdown_steps("Down", 60, None)] == ["Down in 1 minute", "Down"]


def test_parse_data():
    assert parse_data(None) == {}
    assert parse_data('{"combat_over": false, "n": [1, 2]}') == {"combat_over": False, "n": [1, 2]}
    with pytest.raises(BroadcastArgumentError, match="larger than"):
        parse_data(json.dumps({"x": "y" * 5000}))


def test_the_catch_all_subscriber_sees_a_real_broadcast(env, static_cache, everything):
    """The control for the refusal tests: a broadcast that goes out is caught."""
    assert cli("broadcast", "location", "ruins", "hi", env=env).code == 0
    (message,) = everything()
    assert message["channel"] == "location:ruins"


def test_audit_shows_a_refused_message_escaped(env, sync_r):
    out = cli("broadcast", "global", "\x1b[2Jgone [bold]x[/bold]", "--yes", env=env)
    assert out.code == ExitCode.USAGE
    shown = cli("audit", env=env)
    assert shown.code == 0
    assert "\x1b" not in shown.stdout
    words = shown.stdout.split()  # rich wraps long lines
    assert "message=\\x1b[2Jgone" in words
    assert "[bold]x[/bold]:" in words  # as typed, not read as markup


def test_tail_shows_each_broadcast(env, redis_url, static_cache, sync_r):
    proc = subprocess.Popen(
        [str(BIN), "tail", "--json", "--count", "3", "--timeout", "20"],
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: sync_r.pubsub_numsub("game:broadcast")[0][1], 15, "tail to subscribe")
        assert cli("broadcast", "global", "Hello all", "--yes", env=env).code == 0
        assert (
            cli("broadcast", "location", "overpass", "Shake", "--exclude", "3", env=env).code == 0
        )
        assert (
            cli("broadcast", "player", "5", "Hi you", "--type", "combat_update", env=env).code == 0
        )
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [(d["channel"], d["type"], d["summary"]) for d in lines] == [
        ("game:broadcast", "global_broadcast", "announcement: Hello all"),
        ("location:overpass", "location_update", "overpass: Shake (exclude 3)"),
        ("player:5", "personal_message", "to 5: combat_update Hi you"),
    ]
