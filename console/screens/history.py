"""Calls across sessions (the persisted history, newest first): search it, re-run a
call (Enter), load it into the form to edit first (l), open its recording (o)."""
from __future__ import annotations

import json

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from console.core.history import HistoryEntry
from console.core.session import short_peer

CSS = """
HistoryScreen { align: center middle; }
HistoryScreen > Vertical { width: 94%; height: 88%; border: thick $accent; background: $surface; }
HistoryScreen Label { padding: 0 1; text-style: bold; }
HistoryScreen Input { margin: 0 1; }
HistoryScreen DataTable { height: 1fr; }
"""


def short_node(entry: HistoryEntry) -> str:
    if entry.name:
        return entry.name
    return short_peer(entry.peer or entry.target.rsplit("/p2p/", 1)[-1])


class HistoryScreen(ModalScreen["tuple[str, HistoryEntry] | None"]):
    """Dismisses with ("run" | "load" | "open", entry)."""

    DEFAULT_CSS = CSS
    BINDINGS = [
        Binding("escape,h", "dismiss(None)", "Close"),
        Binding("enter,r", "choose('run')", "Re-run"),
        Binding("l", "choose('load')", "Load into the form"),
        Binding("o", "choose('open')", "Open its recording"),
        Binding("slash", "search", "Search"),
    ]

    def __init__(self, entries: list[HistoryEntry]) -> None:
        super().__init__()
        self._all = list(reversed(entries))  # newest first
        self._shown = self._all

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"History: {len(self._all):,} calls, kept across runs · Enter re-runs · l loads into the "
                        "form · o opens the recording · / search · Esc")
            yield Input(placeholder="search: method, node, params, outcome…", id="search")
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("when", "node", "method", "address", "params", "outcome", "chunks", "ms", "rec")
        self._fill()
        table.focus()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for e in self._shown:
            outcome = e.outcome + (f" {e.error.split(':', 1)[0]}" if e.error else "")
            table.add_row(e.when.replace("T", " ")[:19], short_node(e), e.method, e.address,
                          json.dumps(e.params, ensure_ascii=False, default=str)[:40], outcome,
                          f"{e.chunks:,}", f"{e.durationMs:,.0f}", "●" if e.recording else "")

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        text = event.value.strip()
        self._shown = [e for e in self._all if e.matches(text)] if text else self._all
        self._fill()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.query_one(DataTable).focus()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:  # the table takes Enter itself
        self.action_choose("run")

    def action_choose(self, what: str) -> None:
        table = self.query_one(DataTable)
        if not self._shown or table.cursor_row is None:
            return
        entry = self._shown[table.cursor_row]
        if what == "open" and not entry.recording:
            self.notify("this call was not recorded (switch on “record every call”)", severity="warning")
            return
        self.dismiss((what, entry))
