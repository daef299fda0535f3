"""Audit: the latest operator actions, from PostgreSQL or else the Redis stream."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.text import Text

from echoes_ops.fmt import clock_time
from echoes_ops.operations.audit import AuditRecord
from echoes_ops.tui.jobs import load
from echoes_ops.tui.messages import Loaded, LoadFailed
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.base import Row, TablePanel, error_text
from echoes_ops.tui.source import AuditView, Source

LIMIT = 100
RELOAD_AFTER = 10.0
RESULT_STYLES = {"ok": "green", "failed": "bold red", "interrupted": "yellow"}


def audit_rows(records: list[AuditRecord]) -> list[Row]:
    rows: list[Row] = []
    for index, rec in enumerate(records):
        args = ", ".join(f"{k}={v}" for k, v in rec.args.items() if k != "via" and v is not None)
        rows.append(
            (
                rec.id or str(index),
                (
                    clock_time(rec.at),
                    rec.operator,
                    rec.action + (" (dry run)" if rec.dry_run else ""),
                    Text(rec.result, style=RESULT_STYLES.get(rec.result, "")),
                    Text(args, overflow="ellipsis", no_wrap=True),
                ),
            )
        )
    return rows


def render_record(record: AuditRecord) -> RenderableType:
    return Group(
        Text(
            f"{record.action} by {record.operator} on {record.host} at {clock_time(record.at)}",
            style="bold",
        ),
        Text(f"result: {record.result}", style=RESULT_STYLES.get(record.result, "")),
        Text("args: " + json.dumps(record.args, default=str)),
        Text("detail: " + json.dumps(record.detail, default=str)),
    )


class AuditPanel(TablePanel):
    COLUMNS = ("time", "operator", "action", "result", "args")

    def __init__(self, source: Source, *, id: str | None = None) -> None:
        super().__init__(source, id=id)
        self.records: list[AuditRecord] = []
        self.loaded_at: float | None = None

    def show_state(self, state: DashboardState) -> None:
        now = self.source.clock()
        if self.loaded_at is None or now - self.loaded_at >= RELOAD_AFTER:
            self.reload()

    def reload(self) -> None:
        self.loaded_at = self.source.clock()
        load(self, "audit", lambda: self.source.audit(LIMIT))

    def on_loaded(self, message: Loaded) -> None:
        if message.key == "audit" and isinstance(message.value, AuditView):
            message.stop()
            view = message.value
            self.records = view.records
            self.set_rows(audit_rows(view.records))
            where = "PostgreSQL" if view.source == "postgresql" else "the Redis stream"
            note = f" ({view.note})" if view.note else ""
            self.set_hint(f"last {len(view.records)} actions from {where}{note} — Enter: details")

    def on_load_failed(self, message: LoadFailed) -> None:
        if message.key == "audit":
            message.stop()
            self.set_hint(f"audit trail unavailable: {message.error}")
            self.set_detail(error_text(str(message.error)))

    def drill(self, key: str) -> None:
        found = next((r for i, r in enumerate(self.records) if (r.id or str(i)) == key), None)
        if found is not None:
            self.set_detail(render_record(found))
