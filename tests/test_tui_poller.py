"""The dashboard's poller process (tui/poller.py, tui/remote.py, tui/process_source.py):
typed results and errors cross the pipe as they are, a poller that dies fails what waits
on it and is replaced on the next call, and closing the source ends the process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest
import redis

from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode, GamedataError, OpsError, RefusedError, UnreachableError
from echoes_ops.tui.model import Snapshot, TierView
from echoes_ops.tui.process_source import ProcessSource
from echoes_ops.tui.remote import PollerGone
from echoes_ops.tui.wire import portable
from tests.waiting import eventually


async def test_calls_return_the_operations_results(redis_url: str, sync_r: redis.Redis) -> None:
    sync_r.set(keys.lock_key("a"), "w1#1", px=60_000)
    source = ProcessSource(Settings.from_dsn(redis_url))
    try:
        access = await source.open()
        assert access.writable
        snap = await source.snapshot()
        assert isinstance(snap, Snapshot)
        assert [info.name for info in snap.locks] == ["a"]
        tier = await source.tier()
        assert isinstance(tier, TierView)
        assert tier.summary.lock_names == ("a",)
        held = await source.hold_lock("b", "30s", "test")  # a write, audited in the poller
        assert held.name == "b"
        assert sync_r.exists(keys.lock_key("b"))
        proc = source.poller.proc
        assert proc is not None
        assert proc.pid != os.getpid()
    finally:
        await source.close()
    assert proc.returncode is not None  # closed: the process is gone


async def test_errors_keep_their_type_and_exit_code() -> None:
    source = ProcessSource(Settings.from_dsn("redis://127.0.0.1:1/0"))
    try:
        with pytest.raises(UnreachableError) as caught:
            await source.snapshot()
        assert caught.value.exit_code == ExitCode.UNREACHABLE
    finally:
        await source.close()
    plain = portable(GamedataError("bad gamedata", ["x"]))  # does not survive a pickle
    assert type(plain) is OpsError
    assert (str(plain), plain.exit_code) == ("bad gamedata", ExitCode.CONFIG)


async def test_read_only_refuses_without_asking_the_poller(redis_url: str) -> None:
    source = ProcessSource(Settings.from_dsn(redis_url), read_only=True)
    with pytest.raises(RefusedError, match="read-only dashboard: kick refused"):
        await source.kick(1, "no")
    assert source.poller.proc is None
    await source.close()


async def test_a_dead_poller_fails_its_calls_and_is_replaced(redis_url: str) -> None:
    source = ProcessSource(Settings.from_dsn(redis_url))
    try:
        await source.snapshot()
        proc = source.poller.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)  # the call below waits on a poller that
        waiting = asyncio.create_task(source.snapshot())  # then dies
        await asyncio.sleep(0.2)
        assert not waiting.done()
        os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(PollerGone, match=r"poller exited \(-9\)"):
            await asyncio.wait_for(waiting, 10)
        again = await source.snapshot()  # a new poller
        assert isinstance(again, Snapshot)
        assert source.poller.proc is not None
        assert source.poller.proc.pid != proc.pid
    finally:
        await source.close()


async def test_the_tail_streams_from_the_poller(redis_url: str, sync_r: redis.Redis) -> None:
    source = ProcessSource(Settings.from_dsn(redis_url))
    status: list[str] = []
    events = source.tail(status.append)
    try:
        first = asyncio.ensure_future(anext(events))
        await eventually(lambda: bool(status), 15, "the tail's first status line")
        assert status[0].startswith("listening on")
        sync_r.publish(keys.location_channel("ruins"), "not json")
        event = await asyncio.wait_for(first, 10)
        assert event.type == "undecodable"  # type: ignore[union-attr]
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await source.close()


async def test_no_poller_starts_after_close(redis_url: str) -> None:
    # the app's workers may still call while the app winds down: they must not start a
    # poller that nobody would stop
    source = ProcessSource(Settings.from_dsn(redis_url))
    starting = asyncio.ensure_future(source.snapshot())
    await asyncio.sleep(0)  # the poller is being started
    await source.close()  # lets the start finish, then stops it
    with contextlib.suppress(PollerGone):
        await starting
    with pytest.raises(PollerGone, match="stopped"):
        await source.snapshot()
    assert source.poller.proc is None


def test_the_calls_are_declared_once() -> None:
    """CALLS is the one list: the Protocol's async calls, all implemented by RedisSource,
    each proxied by ProcessSource; writes carry the words a read-only dashboard refuses
    them with."""
    import inspect

    from echoes_ops.tui.source import CALLS, RedisSource, Source

    declared = {n for n, v in vars(Source).items() if inspect.iscoroutinefunction(v)}
    assert set(CALLS) == declared - {"close"}
    for name in CALLS:
        assert inspect.iscoroutinefunction(getattr(RedisSource, name)), name
    source = ProcessSource(Settings.from_dsn("redis://127.0.0.1:1/0"))
    assert callable(source.snapshot)
    with pytest.raises(AttributeError):
        _ = source.no_such_call
    assert {n for n, refused in CALLS.items() if refused} == {
        "kick",
        "hold_lock",
        "release_lock",
        "force_release_lock",
        "send_broadcast",
        "set_flag",
    }


async def test_dashboard_json_reads_through_the_poller(redis_url: str) -> None:
    """``dashboard --json`` reads the way the screen does (one way in production)."""
    import json

    from tests.cli_helpers import cli

    out = await asyncio.to_thread(cli, "dashboard", "--json", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    reading = json.loads(out.stdout)
    assert set(reading) >= {"target", "write_access", "snapshot", "tier", "drift"}
