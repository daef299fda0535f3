"""The dashboard driven like an operator would (Textual's Pilot), against a real
redis-server: navigation, each write with its confirmation and its effect in Redis, the
read-only modes, and a Redis outage and recovery."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable

import pytest
import redis
from rich.console import Console
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, TabbedContent

from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import RefusedError, UnreachableError
from echoes_ops.tui import messages as m
from echoes_ops.tui.app import TABS, DashboardApp, create_app
from echoes_ops.tui.modals import ConfirmScreen, HelpScreen, HoldScreen
from echoes_ops.tui.panels.broadcast import BroadcastPanel
from echoes_ops.tui.panels.header import render_header
from echoes_ops.tui.panels.live import LivePanel
from tests.waiting import eventually

OPERATOR = "tester"


def make_app(url: str, *, read_only: bool = False, **options: object) -> DashboardApp:
    settings = Settings.from_dsn(url).with_overrides(operator=OPERATOR)
    return create_app(settings, refresh=0.2, read_only=read_only, **options)  # type: ignore[arg-type]


async def until(pilot: Pilot, check: Callable[[], object], timeout: float = 8.0) -> None:
    """Wait for ``check`` (the suite's wait helper), then for the app to settle."""
    await eventually(lambda: bool(check()), timeout, getattr(check, "__qualname__", ""))
    await pilot.pause()


async def _flag_is(database_url: str, value: str) -> object:
    """REDIS_ENABLED's row once it has ``value`` (None before)."""
    from echoes_ops.operations.flags import get_flag

    flag = await get_flag(database_url, "REDIS_ENABLED")
    return flag if flag.value == value else None


def text_of(widget: object) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)  # type: ignore[attr-defined]
    return console.export_text()


def table_keys(app: DashboardApp, panel: str) -> list[str]:
    table = app.query_one(f"#{panel}-panel").query_one(DataTable)
    return [str(row.value) for row in table.rows]


async def select_row(pilot: Pilot, app: DashboardApp, panel: str, key: str) -> None:
    await until(pilot, lambda: key in table_keys(app, panel))
    table = app.query_one(f"#{panel}-panel").query_one(DataTable)
    table.focus()
    table.move_cursor(row=table_keys(app, panel).index(key))
    await pilot.pause()


def audit_actions(sync_r: redis.Redis) -> list[tuple[str, dict[str, object]]]:
    return [
        (fields["action"], json.loads(fields["args"]))
        for _, fields in sync_r.xrange(keys.AUDIT_STREAM_KEY)
    ]


@pytest.fixture
def players(sync_r: redis.Redis) -> None:
    sync_r.hset(keys.location_cache_key("overpass"), mapping={"id": "overpass", "name": "Overpass"})
    for cid in (1, 2):
        sync_r.hset(
            keys.session_key(cid),
            mapping={
                "worker_id": "w1",
                "location_id": "overpass",
                "username": f"Ash{cid}",
                "last_heartbeat": f"{time.time():.3f}",
            },
        )
        sync_r.expire(keys.session_key(cid), 1800)
        sync_r.sadd(keys.presence_key("overpass"), cid)
        sync_r.hset(keys.worker_connections_key("w1"), str(cid), "connected")


async def test_navigation_help_and_palette(redis_url: str, players: None) -> None:
    app = make_app(redis_url, live_tail=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.state.snapshot is not None)
        for index, (tab, _) in enumerate(TABS):
            await pilot.press(str(index + 1))
            assert app.query_one(TabbedContent).active == tab
        await pilot.press("1", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to Locks" in titles
        assert "Flip REDIS_ENABLED" in titles
        await pilot.press("3")
        await select_row(pilot, app, "locations", "overpass")
        await pilot.press("enter")
        detail = app.query_one("#locations-panel .detail")
        await until(pilot, lambda: "Ash1" in text_of(detail))
        assert "read at " in text_of(detail)  # a detail is read once and says when


async def test_kick_asks_for_a_reason_then_kicks(
    redis_url: str, sync_r: redis.Redis, players: None
) -> None:
    seen: list[Message] = []
    app = make_app(redis_url, live_tail=False)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.press("4")
        await select_row(pilot, app, "sessions", "2")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # no reason: refused, the modal stays
        assert isinstance(app.screen, ConfirmScreen)
        assert sync_r.exists(keys.session_key(2))
        app.screen.query_one("#reason", Input).value = "stuck player"
        await pilot.press("enter")
        await until(pilot, lambda: not sync_r.exists(keys.session_key(2)))
        await until(pilot, lambda: any(isinstance(x, m.ActionDone) for x in seen))
    assert not sync_r.sismember(keys.presence_key("overpass"), 2)
    assert sync_r.exists(keys.session_key(1))
    action, args = audit_actions(sync_r)[-1]
    assert action == "sessions.kick"
    assert args == {"id": 2, "reason": "stuck player", "via": "dashboard"}


async def test_lock_hold_release_and_force_release(redis_url: str, sync_r: redis.Redis) -> None:
    # locks taken elsewhere show up with the next census (every 10 s by default)
    app = make_app(redis_url, live_tail=False, tier_every=0.3)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.snapshot is not None)
        await pilot.press("5", "h")
        assert isinstance(app.screen, HoldScreen)
        hold = app.screen
        hold.query_one("#name", Input).value = "spawn_manager"
        hold.query_one("#ttl", Input).value = "120"
        hold.query_one("#reason", Input).value = "event setup"
        await pilot.press("enter")
        await until(pilot, lambda: sync_r.get(keys.lock_key("spawn_manager")))
        assert str(sync_r.get(keys.lock_key("spawn_manager"))).startswith(f"operator.{OPERATOR}#")
        assert 0 < sync_r.pttl(keys.lock_key("spawn_manager")) <= 120_000

        await select_row(pilot, app, "locks", "spawn_manager")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.click("#confirm")
        await until(pilot, lambda: not sync_r.exists(keys.lock_key("spawn_manager")))

        # a lock left by a worker that is gone: release is refused (not ours, nothing
        # asked), force release shows it is not alive
        sync_r.set(keys.lock_key("stuck"), "w-gone#abcd", px=60_000)
        await select_row(pilot, app, "locks", "stuck")
        await pilot.press("d")
        assert not isinstance(app.screen, ConfirmScreen)
        assert sync_r.exists(keys.lock_key("stuck"))
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        body = text_of(app.screen.query_one("#confirm-body"))
        assert "NOT alive" in body
        assert "w-gone#abcd" in body
        app.screen.query_one("#reason", Input).value = "owner crashed"
        await pilot.press("enter")
        await until(pilot, lambda: not sync_r.exists(keys.lock_key("stuck")))
    actions = [a for a, _ in audit_actions(sync_r)]
    assert actions == ["locks.hold", "locks.release", "locks.release.force"]
    assert audit_actions(sync_r)[-1][1]["reason"] == "owner crashed"


async def test_broadcast_previews_then_sends_the_exact_envelope(
    redis_url: str, sync_r: redis.Redis
) -> None:
    listener = sync_r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.BROADCAST_CHANNEL)
    app = make_app(redis_url, live_tail=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.snapshot is not None)
        await pilot.press("6")
        panel = app.query_one(BroadcastPanel)
        assert app.focused is panel.query_one("#kind")  # the form starts at its first field
        await pilot.press("7")  # tab keys still switch tabs from there
        assert app.tabs.active == "live"
        await pilot.press("6")
        assert app.tabs.active == "broadcast"
        panel.query_one("#message", Input).value = "Restart in 5 minutes"
        await pilot.click("#preview")
        await until(pilot, lambda: panel.plan is not None)
        plan = panel.plan
        assert plan is not None
        assert plan.preview.audience.channel_subscribers == 1
        assert listener.get_message(timeout=0.1) is None  # nothing sent by a preview
        await pilot.click("#send")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.click("#confirm")
        received = await eventually(
            lambda: listener.get_message(timeout=0.05), 5, "the broadcast on game:broadcast"
        )
    body = json.loads(received["data"])
    assert body["msg_id"] == plan.envelope.msg_id
    assert body["payload"] == {
        "type": "server_announcement",
        "data": {"message": "Restart in 5 minutes"},
    }
    assert audit_actions(sync_r)[-1][0] == "broadcast.global"
    listener.close()


@pytest.mark.postgres
async def test_flag_flip_asks_for_a_reason(redis_url: str, database_url: str) -> None:
    from echoes_ops.operations.flags import get_flag
    from echoes_ops.operations.migrations import migrate

    await migrate(database_url)
    settings = Settings.from_dsn(redis_url, database_url).with_overrides(operator=OPERATOR)
    app = create_app(settings, refresh=0.2, live_tail=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        panel = app.query_one("#flags-panel")
        await until(pilot, lambda: getattr(panel, "status", None) is not None)
        await pilot.press("t")
        assert isinstance(app.screen, ConfirmScreen)
        # no env file configured: the modal says so, in the modal
        assert "No env file is configured" in text_of(app.screen.query_one("#confirm-body"))
        app.screen.query_one("#reason", Input).value = "redis outage drill"
        await pilot.press("enter")
        # step 2: a second, distinct confirmation with Cancel focused: Enter cancels
        await until(pilot, lambda: "Step 2/2" in str(getattr(app.screen, "title_text", "")))
        second = app.screen
        assert isinstance(second, ConfirmScreen)
        assert "reason: redis outage drill" in text_of(second.query_one("#confirm-body"))
        assert app.focused is not None
        assert app.focused.id == "cancel"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert (await get_flag(database_url, "REDIS_ENABLED")).is_default  # nothing changed
        await pilot.press("t")
        app.screen.query_one("#reason", Input).value = "redis outage drill"
        await pilot.press("enter")
        await until(pilot, lambda: "Step 2/2" in str(getattr(app.screen, "title_text", "")))
        await pilot.press("tab", "enter")  # from Cancel to the Set button
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        flag = await eventually(lambda: _flag_is(database_url, "false"), 5, "the flag set false")
        assert (flag.value, flag.updated_by, flag.reason) == (
            "false",
            OPERATOR,
            "redis outage drill",
        )
        await until(pilot, lambda: panel.status is not None and panel.status.expected == "false")
        await pilot.press("t")
        app.screen.query_one("#reason", Input).value = "drill over"
        await pilot.press("enter")
        await until(pilot, lambda: "Step 2/2" in str(getattr(app.screen, "title_text", "")))
        await pilot.press("tab", "enter")
        await eventually(lambda: _flag_is(database_url, "true"), 5, "the flag set back to true")


async def test_read_only_hides_and_refuses_writes(
    redis_url: str, sync_r: redis.Redis, players: None
) -> None:
    app = make_app(redis_url, read_only=True, live_tail=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await select_row(pilot, app, "sessions", "1")
        panel = app.query_one("#sessions-panel")
        assert panel.check_action("kick", ()) is False
        await pilot.press("k")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("5", "h")
        assert not isinstance(app.screen, HoldScreen)
        assert "READ-ONLY" in render_header(app.state).plain
        assert not [c for c in app.get_system_commands(app.screen) if c.title == "Hold a lock"]
        with pytest.raises(RefusedError):
            await app.source.kick(1, "no")
    assert sync_r.exists(keys.session_key(1))
    assert not sync_r.exists(keys.AUDIT_STREAM_KEY)


async def test_acl_user_that_cannot_write_makes_it_read_only(
    redis_server, sync_r: redis.Redis
) -> None:
    sync_r.acl_setuser(
        "viewer",
        enabled=True,
        passwords=["+viewerpw"],
        keys=["*"],
        channels=["*"],
        commands=[
            "+@read",
            "+@connection",
            "+info",
            "+client",
            "+@scripting",
            "+acl|whoami",
            "+acl|dryrun",
            "-@write",
        ],
    )
    try:
        url = f"redis://viewer:viewerpw@{redis_server.host}:{redis_server.port}/0"
        app = make_app(url, live_tail=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.state.access is not None)
            assert app.state.access is not None
            assert not app.state.access.writable
            assert "may not SET" in app.state.access.reason
            assert app.state.read_only
            assert app.source.read_only
            with pytest.raises(RefusedError):
                await app.source.hold_lock("x", "10", "no")
    finally:
        sync_r.acl_deluser("viewer")


async def test_survives_a_redis_outage(private_redis) -> None:
    private_redis.start()
    seen: list[Message] = []
    app = make_app(private_redis.url, tier_every=0.5, drift_every=0.5)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await until(pilot, lambda: app.state.connected and app.state.tier is not None)
        await until(pilot, lambda: len(app.state.history.ops) >= 8)
        await asyncio.to_thread(private_redis.stop)
        await until(pilot, lambda: app.state.connected is False)
        before = app.state.snapshot
        assert before is not None
        # a few failed polls later, the last known data are still shown
        await until(pilot, lambda: sum(isinstance(x, m.SourceFailed) for x in seen) >= 2)
        header = render_header(app.state).plain
        assert "DISCONNECTED since" in header
        assert "stale: last data" in header
        assert app.state.snapshot is before  # the last known data stays, marked stale
        failed = [x for x in seen if isinstance(x, m.SourceFailed)]
        assert failed
        assert isinstance(failed[0].error, UnreachableError)
        await pilot.press("2")
        assert "STALE" in text_of(app.query_one("#workers-panel .hint"))
        await pilot.press("1")
        assert "STALE" in text_of(app.query_one("#overview-table"))

        await asyncio.to_thread(private_redis.start)
        await until(pilot, lambda: app.state.connected is True, timeout=10)
        assert app.state.snapshot is not before
        assert "connected" in render_header(app.state).plain
        assert "STALE" not in text_of(app.query_one("#overview-table"))
        # a restarted server: the rate history starts again from its first readings
        assert len(app.state.history.ops) < 8
        # the live tail's gap stays in its status line after the log has scrolled it away
        live = app.query_one(LivePanel)
        await until(pilot, lambda: live.last_gap is not None, timeout=10)
        await pilot.press("7")
        assert "last gap" in text_of(app.query_one("#live-panel .hint"))
        assert isinstance(seen[-1], Message)
        after = seen.index(failed[0])
        assert any(isinstance(x, m.SnapshotReady) for x in seen[after:])


async def test_live_tail_shows_published_messages(redis_url: str, sync_r: redis.Redis) -> None:
    app = make_app(redis_url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        live = app.query_one(LivePanel)
        await until(pilot, lambda: live.status.startswith("listening"))
        body = {
            "type": "global_broadcast",
            "payload": {"type": "server_announcement", "data": {"message": "hello there"}},
        }
        sync_r.publish(keys.BROADCAST_CHANNEL, json.dumps(body))
        sync_r.publish(keys.location_channel("ruins"), "not json")
        await until(pilot, lambda: live.received >= 2)
        assert [e.type for e in live.events] == ["global_broadcast", "undecodable"]
        await pilot.press("slash")  # the filter box, from the keyboard
        assert app.focused is live.query_one(Input)
        await pilot.press(*"undecodable", "enter")
        assert live.needle == "undecodable"
        assert isinstance(app.focused, RichLog)  # back on the log: keys switch tabs again


def burst(app: DashboardApp, *keys_typed: str) -> None:
    """Keys at full speed: all in the app's queue before it handles the first, as a burst
    read from the terminal arrives. (Pilot.press waits for the app to go idle after each
    key, which hides what happens when keys come faster than they are handled.)"""
    from textual import events
    from textual.keys import _character_to_key

    for typed in keys_typed:
        if len(typed) == 1:
            key = typed if typed.isalnum() else _character_to_key(typed)
            app.post_message(events.Key(key, typed))
        else:
            app.post_message(events.Key(typed, {"enter": "\r", "tab": "\t"}.get(typed)))


def keys_settled(app: DashboardApp) -> bool:
    queue = getattr(app, "keys", None)  # the key queue (absent before it existed)
    return queue is None or bool(queue.idle)


async def test_keys_typed_at_full_speed_go_to_the_input_they_follow(
    redis_url: str, sync_r: redis.Redis, players: None
) -> None:
    """`/` then `Wren1` typed in one burst: every key lands in the search box (no tab
    switch, no refresh, no page turn), and the kick that follows the search names the
    player found, not the row the cursor was on before."""
    for cid, name, where in ((12, "Ash12", "overpass"), (409, "Wren1", "ruins")):
        sync_r.hset(
            keys.session_key(cid),
            mapping={
                "worker_id": "w1",
                "location_id": where,
                "username": name,
                "last_heartbeat": f"{time.time() - 7:.3f}",
            },
        )
        sync_r.sadd(keys.presence_key(where), cid)
    app = make_app(redis_url, live_tail=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await select_row(pilot, app, "sessions", "12")
        burst(app, "/", *"Wren1")
        await until(pilot, lambda: keys_settled(app))
        await pilot.pause(0.3)
        assert app.query_one("#search", Input).value == "Wren1"
        assert app.query_one(TabbedContent).active == "sessions"
        burst(app, "enter", "k")  # k typed before the results are in: never the old row
        await until(pilot, lambda: keys_settled(app) and table_keys(app, "sessions") == ["409"])
        assert not isinstance(app.screen, ConfirmScreen)
        # the kick modal, and the reason typed in the same burst, go where they belong
        burst(app, "k", *"stuck", "enter")
        await until(pilot, lambda: not sync_r.exists(keys.session_key(409)))
        assert sync_r.exists(keys.session_key(12))
    action, args = audit_actions(sync_r)[-1]
    assert (action, args) == ("sessions.kick", {"id": 409, "reason": "stuck", "via": "dashboard"})


async def test_kick_modal_names_who_and_hold_takes_durations_typed_at_full_speed(
    redis_url: str, sync_r: redis.Redis, players: None
) -> None:
    app = make_app(redis_url, live_tail=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await select_row(pilot, app, "sessions", "2")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Kick player 2 (Ash2)" in app.screen.title_text
        body = text_of(app.screen.query_one("#confirm-body"))
        for shown in ("2 Ash2", "location", "overpass", "worker", "w1", "heartbeat", "read at"):
            assert shown in body
        await pilot.press("escape")
        hint = app.query_one("#sessions-panel .hint")
        assert "read at " in text_of(hint)
        assert "re-read every 10 s" in text_of(hint)

        await pilot.press("5")
        burst(app, "h", *"spawn_manager", "tab", *"1h30m", "tab", *"event setup", "enter")
        await until(pilot, lambda: sync_r.exists("lock:spawn_manager"), timeout=10)
        ttl = sync_r.pttl("lock:spawn_manager")
        assert 5_300_000 < ttl <= 5_400_000  # 1h30m, as locks hold --ttl reads it
