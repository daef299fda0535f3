"""``broadcast``: the plan's envelopes as the plan's listener reads them, refusals that
publish nothing, dry runs, and what the audit trail and ``tail`` show of a broadcast (real
redis-server; the countdown and its Ctrl-C: test_broadcast_countdown.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.operations.broadcast import (
    MAX_MESSAGE_CHARS,
    BroadcastArgumentError,
    parse_data,
)
from tests import broadcast_helpers
from tests.broadcast_helpers import BIN, audit_records
from tests.cli_helpers import cli
from tests.runtime_helpers import make_worker, session
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(60)

# the shared fixtures (tests/broadcast_helpers.py)
env = broadcast_helpers.env
listener = broadcast_helpers.listener
everything = broadcast_helpers.everything


@pytest.fixture
def static_cache(sync_r):
    """A loaded static cache with two locations (what preload writes, enough for the check)."""
    for loc in ("overpass", "ruins"):
        sync_r.hset(keys.location_cache_key(loc), mapping={"id": loc, "name": loc.title()})


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
