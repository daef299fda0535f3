"""The dashboard's data source and the reads it added, against a real redis-server, plus
the pure render functions (no terminal)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis
from rich.console import Console, RenderableType

from echoes_ops.client.budget import TARGET_S, StepBudget
from echoes_ops.client.connect import AnyRedis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.operations.drilldown import InventoryPreview, inventory_preview, worker_detail
from echoes_ops.operations.overview import rates_between, read_counters, write_access
from echoes_ops.operations.sessions import page_sessions
from echoes_ops.tui.model import DashboardState, History
from echoes_ops.tui.panels.header import render_header
from echoes_ops.tui.panels.live import matches, tail_line
from echoes_ops.tui.panels.locations import location_rows
from echoes_ops.tui.panels.locks import remaining
from echoes_ops.tui.panels.overview import overview_rows, render_overview
from echoes_ops.tui.panels.sessions import render_session
from echoes_ops.tui.source import POLL_TARGET_S, RedisSource
from tests.tui_fake import NOW, FakeSource, counters


def render_plain(renderable: RenderableType) -> str:
    console = Console(width=160, record=True)
    console.print(renderable)
    return console.export_text()


def _sessions(sync_r: redis.Redis, count: int) -> None:
    pipe = sync_r.pipeline()
    for cid in range(1, count + 1):
        pipe.hset(
            keys.session_key(cid),
            mapping={"username": f"Ash{cid}" if cid % 10 else f"Rook{cid}", "worker_id": "w1"},
        )
        pipe.expire(keys.session_key(cid), 1800)
    pipe.execute()


async def test_page_sessions_walks_every_session_once_in_bounded_pages(r, sync_r) -> None:
    _sessions(sync_r, 230)
    sync_r.set("filler", "x")
    seen: list[int] = []
    cursor, pages = "0", 0
    while True:
        page = await page_sessions(r, cursor, 50)
        assert len(page.rows) < 50 + 100  # never the whole keyspace in one page
        seen += [row.character_id for row in page.rows]
        pages += 1
        cursor = page.cursor
        if page.done:
            break
    assert sorted(set(seen)) == list(range(1, 231))
    assert pages >= 3
    found = await page_sessions(r, "0", 50, name="rook", max_steps=1000)
    names = {row.username for row in found.rows}
    assert names
    assert all(n and n.startswith("Rook") for n in names)


async def test_counters_rates_and_write_access(r, sync_r) -> None:
    first = await read_counters(r)
    for _ in range(5):
        sync_r.publish(keys.BROADCAST_CHANNEL, "x")
    time.sleep(0.01)
    second = await read_counters(r)
    rates = rates_between(first, second)
    assert rates is not None
    assert rates.publish_per_sec > 0
    assert second.publishes - first.publishes == 5
    access = await write_access(r)
    assert access.writable
    assert access.user == "default"


async def test_worker_detail_and_inventory(r, sync_r) -> None:
    _sessions(sync_r, 3)
    for cid in (1, 2, 3):
        sync_r.hset(keys.worker_connections_key("w1"), str(cid), "connected")
    sync_r.hset(keys.session_key(3), "worker_id", "w2")  # reconnected elsewhere
    sync_r.rpush(keys.inventory_key(1), '{"item_id": "knife", "quantity": 1}', "not json")
    detail = await worker_detail(r, "w1")
    assert [(p.character_id, p.names_worker) for p in detail.players] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    inv = await inventory_preview(r, 1)
    assert inv.total == 2
    assert inv.rows == [{"item_id": "knife", "quantity": 1}, {"raw": "not json"}]


async def test_redis_source_reads_workers_and_locks_by_name_after_the_census(
    redis_url: str, sync_r: redis.Redis
) -> None:
    sync_r.set(keys.lock_key("a"), "w1#1", px=60_000)
    source = RedisSource(Settings.from_dsn(redis_url))
    try:
        first = await source.snapshot()  # the first one scans
        assert [info.name for info in first.locks] == ["a"]
        sync_r.set(keys.lock_key("b"), "w1#2", px=60_000)
        sync_r.delete(keys.lock_key("a"))
        second = await source.snapshot()  # by name: a is gone, b not known yet
        assert second.locks == []
        tier = await source.tier()
        assert tier.summary.lock_names == ("b",)
        third = await source.snapshot()
        assert [info.name for info in third.locks] == ["b"]
    finally:
        await source.close()


def test_pure_renderers() -> None:
    state = DashboardState("redis://x:6379/0", read_only_flag=False)
    assert overview_rows(state) == [("status", "waiting for the first reading")]
    state.mark_disconnected(NOW, "refused")
    assert "DISCONNECTED since" in render_header(state).plain
    lock = FakeSource().locks()[1]
    assert remaining(lock, 0) == "25s"
    assert remaining(lock, 10.5) == "14s"
    assert remaining(lock, 30) == "expired?"
    import asyncio

    snap = asyncio.run(FakeSource().snapshot())
    rows = location_rows(snap.locations, width=10)
    assert rows[0][0] == "overpass"
    assert str(rows[0][1][3]) == "█" * 10
    assert str(rows[-1][1][3]) == "█"


def test_overview_marks_its_data_stale_while_disconnected() -> None:
    import asyncio

    state = DashboardState("redis://x:6379/0", read_only_flag=False)
    state.snapshot = asyncio.run(FakeSource().snapshot())
    state.mark_connected()
    assert all(label != "STALE" for label, _ in overview_rows(state))
    state.mark_disconnected(NOW + 5, "refused")
    label, value = overview_rows(state)[0]
    assert label == "STALE"
    assert "disconnected" in value
    assert "STALE" in render_plain(render_overview(state))


def test_rate_history_restarts_with_a_restarted_server() -> None:
    history = History()
    for step in range(5):
        history.add(counters(step))
    assert len(history.ops) == 4
    assert history.last is not None
    restarted = replace(counters(0), at=counters(5).at, run_id="run-2", uptime_s=1, commands=10)
    history.add(restarted)
    assert len(history.ops) == 0  # no reading of the old server stays in the sparkline
    assert history.last is None
    history.add(replace(restarted, at=restarted.at + 2, uptime_s=3, commands=1010))
    assert list(history.ops) == [500.0]


def test_session_detail_says_when_no_inventory_is_cached() -> None:
    import asyncio

    view = asyncio.run(FakeSource().session_detail(5))
    assert "inventory: 3 items, TTL 9m00s" in render_plain(render_session(view))
    empty = replace(view, inventory=InventoryPreview(5, 0, -2))
    text = render_plain(render_session(empty))
    assert "inventory: not cached" in text
    assert "TTL gone" not in text


def test_flags_tab_reads_again_soon_while_a_worker_has_not_applied(monkeypatch) -> None:
    import asyncio

    from echoes_ops.tui.panels import flags as flags_panel

    source = FakeSource()
    status = asyncio.run(source.flag_status())
    loads: list[str] = []
    monkeypatch.setattr(flags_panel, "load", lambda panel, key, fn: loads.append(key))
    panel = flags_panel.FlagsPanel(source)  # type: ignore[arg-type]
    state = DashboardState("redis://x:6379/0", read_only_flag=False)
    panel.status, panel.loaded_at = status, NOW - 3
    panel.show_state(state)
    assert loads == []  # every worker applied it: the next read is RELOAD_AFTER away
    pending = replace(status.workers[0], applied=False)
    panel.status = replace(status, workers=[pending, *status.workers[1:]])
    panel.show_state(state)
    assert loads == ["flag"]  # one has not (right after a flip): read again within 2 s


async def test_tail_lines_and_filter() -> None:
    events = []
    async for event in FakeSource().tail(lambda _: None):
        events.append(event)
        if len(events) == 5:
            break
    assert "Restart in 5 minutes" in tail_line(events[0]).plain
    assert [matches(e, "location ruins") for e in events] == [False, False, False, False, True]


def test_dashboard_command_json_and_refusals(redis_url: str, sync_r: redis.Redis) -> None:
    import json

    from tests.cli_helpers import cli

    _sessions(sync_r, 3)
    out = cli("dashboard", "--json", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tier"]["sessions"] == 3
    assert data["write_access"]["writable"] is True
    assert set(data["drift"]["counts"]) >= {"orphan_member", "missing_member"}
    down = cli("dashboard", "--json", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.code == 4
    assert "connection refused" in down.one_error_line()
    no_tty = cli("dashboard", env={"REDIS_URL": redis_url})
    assert no_tty.code == 2
    assert "needs a terminal" in no_tty.one_error_line()


async def test_the_dashboard_polls_steps_aim_at_the_poll_target(
    tier_r: AnyRedis, tier_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The census and the drift walk of the dashboard (background polls) size their steps
    for POLL_TARGET_S of server time, half the stepped walks' target, on every node."""
    for cid in range(1, 301):
        await tier_r.hset(keys.session_key(cid), mapping={"username": f"A{cid}", "worker_id": "w"})
    targets: list[float] = []
    observe = StepBudget.observe

    def seen(self: StepBudget, used: int, seconds: float) -> int:
        targets.append(self.target)
        return observe(self, used, seconds)

    monkeypatch.setattr(StepBudget, "observe", seen)
    source = RedisSource(tier_settings)
    try:
        tier = await source.tier()
        assert tier.summary.sessions == 300
        counted = len(targets)
        assert counted > 0
        drift = await source.drift()
        assert len(targets) > counted
        assert drift.counts
    finally:
        await source.close()
    assert set(targets) == {POLL_TARGET_S}
    assert POLL_TARGET_S < TARGET_S
