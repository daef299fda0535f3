"""Sessions: search by id or name, paged through SCAN; detail with inventory and TTLs; kick."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from echoes_ops.fmt import clock_time, duration, maybe, number, ttl
from echoes_ops.operations.sessions import KickResult, SessionPage, SessionSummary
from echoes_ops.tui.jobs import act, load
from echoes_ops.tui.messages import Loaded, LoadFailed
from echoes_ops.tui.modals import ConfirmScreen
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import Row, TablePanel
from echoes_ops.tui.panels.styleonce import DashTable
from echoes_ops.tui.source import SessionView, Source


def session_rows(rows: list[SessionSummary]) -> list[Row]:
    out: list[Row] = []
    for s in rows:
        beat = "unknown" if s.heartbeat_age is None else duration(s.heartbeat_age)
        out.append(
            (
                str(s.character_id),
                (
                    str(s.character_id),
                    maybe(s.username),
                    maybe(s.location_id),
                    maybe(s.worker_id),
                    f"{maybe(s.hp)}/{maybe(s.max_hp)}",
                    maybe(s.level),
                    ttl(s.ttl),
                    Text(beat, style="yellow" if s.stale else ""),
                ),
            )
        )
    return out


def render_session(view: SessionView) -> RenderableType:
    d = view.detail
    s = d.summary
    head = Text()
    head.append(f"player {s.character_id} {s.username or ''}", style="bold")
    head.append(
        f"  at {s.location_id or '?'} ({s.location_name or '?'})  worker {s.worker_id or '?'}"
    )
    alive = {True: "alive", False: "DEAD", None: "?"}[d.worker_alive]
    head.append(f" ({alive})", style="green" if d.worker_alive else "red")
    cached = view.inventory
    if cached.ttl == -2:  # no player:<id>:inventory key: nothing cached (not an empty inventory)
        inventory = "not cached"
    else:
        inventory = f"{number(cached.total)} items, TTL {ttl(cached.ttl)}"
    ttls = Text(
        f"session TTL {ttl(s.ttl)}   inventory: {inventory}   "
        f"in location sets: {', '.join(d.in_locations) or 'none'}"
    )
    fields = Table.grid(padding=(0, 1))
    for name, value in sorted(d.fields.items()):
        fields.add_row(Text(name, style="dim"), value)
    parts: list[RenderableType] = [head, ttls]
    if d.problems:
        parts.append(Text("problems: " + "; ".join(d.problems), style="yellow"))
    parts.append(fields)
    if view.inventory.rows:
        inv = Table(
            "item", "qty", "equipped", box=None, pad_edge=False, title="inventory (first rows)"
        )
        for row in view.inventory.rows:
            inv.add_row(
                maybe(row.get("item_id", row.get("raw"))),
                maybe(row.get("quantity")),
                maybe(row.get("is_equipped")),
            )
        parts.append(inv)
    return Group(*parts)


def describe_kick(result: KickResult) -> str:
    where = ", ".join(result.removed_from) or "no location"
    return (
        f"kicked player {result.character_id}: session "
        f"{'removed' if result.removed_session else 'was already gone'}, removed from {where}, "
        f"{result.notified} client(s) notified"
    )


def kick_body(cid: int, seen: SessionSummary | None, read_at: float | None) -> RenderableType:
    """Who is about to be kicked, as the page showed them, then what a kick does."""
    who = Table.grid(padding=(0, 2))
    if seen is None:
        who.add_row("player", str(cid))
    else:
        beat = "unknown" if seen.heartbeat_age is None else duration(seen.heartbeat_age)
        where = seen.location_id or "?"
        if seen.location_name:
            where += f" ({seen.location_name})"
        who.add_row("player", f"{cid} {seen.username or '?'}")
        who.add_row("location", where)
        who.add_row("worker", maybe(seen.worker_id))
        who.add_row("heartbeat", f"{beat} old when the page was read at {clock_time(read_at)}")
    what = Text(
        f"Remove player {cid}'s session, their presence in every location set and their "
        "worker's connection entry (one atomic script), then send them a 'kicked' message."
    )
    return Group(who, Text(""), what)


RELOAD_AFTER = 10.0  # seconds between two reads of the shown page while the tab is shown


class SessionsPanel(TablePanel):
    COLUMNS = ("id", "name", "location", "worker", "hp", "lvl", "TTL", "heartbeat")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_page", "Next page"),
        Binding("k", "kick", "Kick"),
    ]

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(source, id=id)
        self.query_text = ""
        self.cursor = "0"  # where the next page starts
        self.page_cursor = "0"  # where the shown page started (re-read from there)
        self.page_number = 0
        self.started = False
        self.read_only = False
        self.loading = False
        self.read_at: float | None = None  # when the shown page was read
        self.summaries: dict[str, SessionSummary] = {}  # the shown rows, by key

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="search: player id, or part of a name — Enter", compact=True, id="search"
        )
        yield Static("", classes="hint")
        table = DashTable(cursor_type="row", zebra_stripes=True)
        yield table
        with VerticalScroll(classes="detail-box"):
            yield Static("", classes="detail")

    def show_state(self, state: DashboardState) -> None:
        if self.read_only != state.read_only:
            self.read_only = state.read_only
            self.refresh_bindings()
        if not self.started and state.connected:
            self.started = True
            self._load_page("0", advance=True)
        elif (
            self.read_at is not None
            and not self.loading
            and self.source.clock() - self.read_at >= RELOAD_AFTER
        ):
            self._load_page(self.page_cursor, advance=False)  # the shown page, read again

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "kick" and self.read_only)

    def _load_page(self, cursor: str, *, advance: bool) -> None:
        if advance:
            self.set_hint("searching…")
        self.loading = True
        query = self.query_text

        async def page() -> tuple[str, bool, SessionPage]:
            return cursor, advance, await self.source.session_page(query, cursor)

        load(self, "page", page)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_text = event.value.strip()
        self.page_number = 0
        self.summaries = {}
        self.set_rows([])  # no row to act on until the results are in
        self._load_page("0", advance=True)
        self.screen.set_focus(self.table)

    def action_search(self) -> None:
        # now, not after a refresh: the keys typed next are meant for the box
        self.screen.set_focus(self.query_one("#search", Input))

    def action_next_page(self) -> None:
        if self.cursor == "0":
            self.notify("no more sessions: this was the last page")
            return
        self._load_page(self.cursor, advance=True)

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "page" and isinstance(message.value, tuple):
            message.stop()
            self.loading = False
            cursor, advance, page = message.value
            self.page_cursor = cursor
            self.cursor = page.cursor
            if advance:
                self.page_number += 1
            self.read_at = self.source.clock()
            self.summaries = {str(row.character_id): row for row in page.rows}
            self.set_rows(session_rows(page.rows))
            what = f"'{self.query_text}'" if self.query_text else "all sessions"
            more = "n: next page" if not page.done else "end of the walk"
            self.set_hint(
                f"read at {clock_time(self.read_at)}, re-read every {RELOAD_AFTER:.0f} s · "
                f"{what}: page {self.page_number}, {len(page.rows)} shown "
                f"(scanned {number(page.scanned)} keys) — {more}, Enter: details"
            )

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "page":
            message.stop()
            self.loading = False
            self.set_hint(f"search failed: {message.error}")

    def render_detail(self, value: object) -> RenderableType:
        return render_session(value) if isinstance(value, SessionView) else Text(str(value))

    def drill(self, key: str) -> None:
        load(self, "detail:session", lambda: self.source.session_detail(int(key)))

    def action_kick(self) -> None:
        if self.read_only:
            self.notify("read-only: kick refused", severity="warning")
            return
        key = self.cursor_key()
        if key is None:
            self.notify("select a session first", severity="warning")
            return
        cid = int(key)
        seen = self.summaries.get(key)
        name = f" ({seen.username})" if seen is not None and seen.username else ""
        body = kick_body(cid, seen, self.read_at)

        def confirmed(reason: str | None) -> None:
            if reason is None:
                return
            act(
                self,
                self.source,
                "sessions.kick",
                lambda: self.source.kick(cid, reason),
                describe_kick,
            )

        self.app.push_screen(
            ConfirmScreen(f"Kick player {cid}{name}?", body, confirm_label="Kick"),
            confirmed,
        )
