"""The UI stage of ``benchmarks/dashboard.py``: the dashboard headless, keys sent the way a
terminal's input thread sends them, each timed from its sending to the repaint showing it.

A key's latency here is *key to repaint*: from the moment the input thread hands the key to
the app to the end of the first frame the screen begins after the key was handled (the
action its binding names returned, and for a tab key the switch's own handler, which focuses
the new tab's table, ran too). Every key sent changes what the screen shows, so there is always such a frame:
a tab key (six switches over the run, as an operator would), else the shown tab's own key
(cursor down/up in a table with rows, pause/resume on Live, help opened and closed on the
Overview). A tick whose tab has nothing to move (a table with fewer than two rows) sends
nothing. Headless, Textual skips turning a frame into terminal bytes; the probe does that
work too (and throws the bytes away), so a frame costs what it costs on a terminal.

Alongside: a 10 ms timer on the screen's event loop measures how late it fires (a stall
bounds how long any key can wait), and for each key the screen thread's CPU time from
sending to repaint, a figure that a busy machine stretches far less than wall time.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from textual import events
from textual._compositor import CompositorUpdate
from textual.renderables.blank import Blank
from textual.screen import Screen
from textual.widgets import DataTable

from echoes_ops.tui.app import DashboardApp
from echoes_ops.tui.modals import HelpScreen

TAB_KEYS = {"1": "overview", "2": "workers", "3": "locations", "4": "sessions", "5": "locks"}
TAB_KEYS |= {"7": "live"}
SWITCH_ORDER = ("3", "7", "2", "4", "5", "1")
CHARACTERS: dict[str, str | None] = {
    "space": " ",
    "question_mark": "?",
    "escape": "\x1b",
    "down": None,
    "up": None,
}
KEY_EVERY = 0.1  # seconds between two keys (after the previous one's repaint)
KEY_TIMEOUT = 5.0  # seconds a key may take before it counts as lost


@dataclass
class KeyTiming:
    key: str
    tab: str  # the tab shown when it was sent
    handled: float  # seconds from sending to handled
    repaint: float  # seconds from sending to the end of the first frame after it
    cpu: float  # the screen thread's CPU seconds meanwhile


@dataclass
class UiResult:
    stall_max: float  # ms
    stall_p99: float  # ms
    received: int
    stall_cpu_max: float = 0.0  # ms: the screen thread's own CPU time in the longest-working tick
    keys: list[KeyTiming] = field(default_factory=list)
    lost: int = 0
    frames: int = 0
    screen_cpu: float = 0.0  # the screen process's CPU seconds over the stage
    seconds: float = 0.0


class ProbeApp(DashboardApp):
    """The dashboard, plus the marks the probe reads: each frame written (after doing the
    terminal encoding a headless run skips), the end of each action a key's binding ran, and
    the end of each tab switch's own handler (it runs after the switch's action)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[float, float]] = []  # (started, ended), perf_counter
        self.switched: list[float] = []
        self.acted: list[float] = []
        self.probe_lock = threading.Lock()

    def _display(self, screen: Screen[Any], renderable: Any) -> None:
        started = time.perf_counter()
        if (
            self.is_headless
            and renderable is not None
            and isinstance(renderable, CompositorUpdate)
            and not self._batch_count
        ):
            renderable.render_segments(self.console)  # what writing to a terminal costs
        super()._display(screen, renderable)
        if renderable is not None and not isinstance(renderable, Blank):
            with self.probe_lock:
                self.frames.append((started, time.perf_counter()))

    def _focus_panel(self) -> None:
        super()._focus_panel()
        with self.probe_lock:
            self.switched.append(time.perf_counter())

    async def _dispatch_action(self, namespace: Any, action_name: str, params: Any) -> bool:
        done = await super()._dispatch_action(namespace, action_name, params)
        with self.probe_lock:
            self.acted.append(time.perf_counter())
        return done


def _next_key(app: ProbeApp, switch: bool, switches_done: int) -> str | None:
    if switch:
        return SWITCH_ORDER[switches_done % len(SWITCH_ORDER)]
    if isinstance(app.screen, HelpScreen):
        return "escape"
    tab = app.tabs.active
    if tab == "overview":
        return "question_mark"
    if tab == "live":
        return "space"
    focused = app.focused
    if isinstance(focused, DataTable):
        if focused.row_count < 2:
            return None
        return "down" if focused.cursor_row == 0 else "up"
    return None


def press_keys(
    app: ProbeApp, until: float, switches: int, out: list[KeyTiming], lost: list[int]
) -> None:
    """From a thread, as the terminal driver's input thread does: a key every KEY_EVERY
    seconds until ``until`` (time.monotonic), waiting for each one's repaint."""
    main_cpu = time.pthread_getcpuclockid(threading.main_thread().ident or 0)
    start = time.monotonic()
    done = 0
    while time.monotonic() < until:
        switch = time.monotonic() > start + (done + 1) * (until - start) / (switches + 1)
        if switch and isinstance(app.screen, HelpScreen):
            switch = False  # close the help first
        key = _next_key(app, switch, done)
        if switch:
            done += 1
        if key is None:
            if os.environ.get("TRACE_KEYS"):  # why a tick sent nothing
                focused = app.focused
                rows = getattr(focused, "row_count", None)
                print(f"  no key: {app.tabs.active}, focus {focused!r}, {rows} rows")
            time.sleep(KEY_EVERY)
            continue
        shown = app.tabs.active or ""
        wants_switch = key in TAB_KEYS and TAB_KEYS[key] != shown
        with app.probe_lock:
            marks = (len(app.acted), len(app.switched))
        event = events.Key(key, CHARACTERS.get(key, key))
        event.set_sender(app)
        cpu0 = time.clock_gettime(main_cpu)
        sent = time.perf_counter()
        app._driver.send_message(event)  # type: ignore[union-attr]
        deadline = time.monotonic() + KEY_TIMEOUT
        handled = repainted = None
        while time.monotonic() < deadline:
            with app.probe_lock:
                if (
                    handled is None
                    and len(app.acted) > marks[0]
                    and (not wants_switch or len(app.switched) > marks[1])
                ):
                    handled = max([app.acted[marks[0]], *app.switched[marks[1] : marks[1] + 1]])
                if handled is not None:
                    repainted = next(
                        (end for begin, end in app.frames[-50:] if begin >= handled), None
                    )
            if repainted is not None:
                break
            time.sleep(0.0005)
        if handled is None or repainted is None:
            lost.append(1)
            if os.environ.get("TRACE_KEYS"):
                print(
                    f"  lost: {key} on {shown}, handled {handled is not None}, now {app.screen!r}"
                )
        else:
            cpu = time.clock_gettime(main_cpu) - cpu0
            out.append(KeyTiming(key, shown, handled - sent, repainted - sent, cpu))
        time.sleep(KEY_EVERY)


_GC_STARTED: list[float] = []


def _trace_gc(phase: str, info: dict[str, Any]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _GC_STARTED[:] = [time.perf_counter()]
    elif _GC_STARTED:
        print(f"  full collection {(time.perf_counter() - _GC_STARTED[0]) * 1000:.0f} ms")


async def ui_stage(app: ProbeApp, seconds: float, switches: int = 6) -> UiResult:
    """Run ``app`` headless at 160x48 for ``seconds`` while keys are sent and timed."""
    lags: list[float] = []
    worked: list[float] = []  # the screen thread's CPU seconds between two ticks
    timings: list[KeyTiming] = []
    lost: list[int] = []
    trace = bool(os.environ.get("TRACE_STALLS"))
    if trace:
        gc.callbacks.append(_trace_gc)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            loop = asyncio.get_running_loop()
            profile = cProfile.Profile() if os.environ.get("PROFILE") else None
            if profile is not None:
                await asyncio.sleep(2.0)  # past the start-up
                profile.enable()
            cpu0 = time.process_time()
            end = loop.time() + seconds
            presser = threading.Thread(
                target=press_keys,
                args=(app, time.monotonic() + seconds, switches, timings, lost),
                daemon=True,
            )
            presser.start()
            while loop.time() < end:
                before, used = loop.time(), time.thread_time()
                await asyncio.sleep(0.01)
                lags.append(loop.time() - before - 0.01)
                worked.append(time.thread_time() - used)
                if trace and lags[-1] > 0.05:
                    at = loop.time() - end + seconds
                    print(f"  stall {lags[-1] * 1000:.0f} ms at {at:.2f} s on {app.tabs.active}")
            await asyncio.to_thread(presser.join, KEY_TIMEOUT + 5)
            cpu = time.process_time() - cpu0
            if profile is not None:
                profile.disable()
                profile.dump_stats(os.environ["PROFILE"])
            received = app.query_one("#live-panel").received  # type: ignore[attr-defined]
            frames = len(app.frames)
            await pilot.pause(0)
    finally:
        if trace:
            gc.callbacks.remove(_trace_gc)
    lags.sort()
    return UiResult(
        stall_max=lags[-1] * 1000,
        stall_p99=lags[int(0.99 * (len(lags) - 1))] * 1000,
        stall_cpu_max=max(worked, default=0.0) * 1000,
        received=int(received),
        keys=timings,
        lost=len(lost),
        frames=frames,
        screen_cpu=cpu,
        seconds=seconds,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def report_ui(result: UiResult, source: str) -> None:
    print(
        f"dashboard UI for {result.seconds:g} s (source: {source}; 1 s refresh, live tail on, "
        f"tabs switched): event-loop stall max {result.stall_max:.1f} ms, p99 "
        f"{result.stall_p99:.1f} ms (the most screen CPU between two ticks "
        f"{result.stall_cpu_max:.1f} ms); live tab received {result.received:,} messages; "
        f"{result.frames:,} frames; screen process CPU {result.screen_cpu:.2f} s"
    )
    keys = result.keys
    if not keys:
        print(f"key presses: none timed ({result.lost} lost)")
        return
    repaint = [k.repaint * 1000 for k in keys]
    handled = [k.handled * 1000 for k in keys]
    cpu = [k.cpu * 1000 for k in keys]
    worst = max(keys, key=lambda k: k.repaint)
    print(
        f"key presses: {len(keys)} timed, {result.lost} lost (no repaint within "
        f"{KEY_TIMEOUT:g} s); key to repaint median {_pct(repaint, 0.5):.1f} ms, "
        f"p99 {_pct(repaint, 0.99):.1f} ms, max {max(repaint):.1f} ms "
        f"(key {worst.key} on {worst.tab}); key to handled median {_pct(handled, 0.5):.1f} ms, "
        f"p99 {_pct(handled, 0.99):.1f} ms; screen-thread CPU per key median "
        f"{_pct(cpu, 0.5):.1f} ms, p99 {_pct(cpu, 0.99):.1f} ms, max {max(cpu):.1f} ms"
    )
    by_kind: dict[str, list[KeyTiming]] = {}
    for k in keys:
        switch = k.key in TAB_KEYS and TAB_KEYS[k.key] != k.tab
        by_kind.setdefault("tab switch" if switch else f"{k.key} on {k.tab}", []).append(k)
    print("  by key: repaint median / max ms, screen CPU median ms")
    for kind, timings in sorted(by_kind.items()):
        wall = [t.repaint * 1000 for t in timings]
        used = [t.cpu * 1000 for t in timings]
        print(
            f"    {kind:<24}{len(timings):>4}x {_pct(wall, 0.5):>7.1f} /{max(wall):>7.1f}"
            f"{_pct(used, 0.5):>9.1f}"
        )
