"""Opening a recording, choosing the tab to compare with, and the side-by-side
diff of two calls (live or recorded): every difference listed, the two chunks of
the highlighted one shown next to each other, Enter jumps to it."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from console.core import diff as D
from console.core.recording import Recording
from console.widgets.call_view import pretty

LIST_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 94%; height: 90%; border: thick $accent; background: $surface; }}
{name} Label {{ padding: 0 1; text-style: bold; }}
{name} .hint {{ padding: 0 1; color: $text-muted; }}
{name} DataTable {{ height: 1fr; }}
"""


def recent_recordings(folders: list[Path], limit: int = 200) -> list[Path]:
    files = []
    for folder in folders:
        if folder.is_dir():
            files += [p for p in folder.glob("*.jsonl") if p.is_file()]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return files[:limit]


class OpenRecordingScreen(ModalScreen["str | None"]):
    """A path typed in, or one of the recordings in the data directory."""

    DEFAULT_CSS = LIST_CSS.format(name="OpenRecordingScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, folders: list[Path]) -> None:
        super().__init__()
        self._files = recent_recordings(folders)
        self._folders = folders

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Open a recording — type a path and Enter, or pick one below; Esc closes")
            yield Input(placeholder="path/to/recording.jsonl", id="path")
            yield Static("", id="problem", classes="hint")
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("modified", "file", "size", "folder")
        for p in self._files:
            st = p.stat()
            table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)), p.name,
                          f"{st.st_size / 1000:,.1f} KB", str(p.parent))
        if not self._files:
            self.query_one("#problem", Static).update(
                "no recordings yet in " + ", ".join(str(f) for f in self._folders))
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        path = os.path.expanduser(event.value.strip())
        if not path or not Path(path).is_file():
            self.query_one("#problem", Static).update(f"no such file: {path or '(empty)'}")
            return
        self.dismiss(path)

    @on(DataTable.RowSelected)
    def _picked(self, event: DataTable.RowSelected) -> None:
        if self._files:
            self.dismiss(str(self._files[event.cursor_row]))


class PickTabScreen(ModalScreen["str | None"]):
    """Which other tab to compare with."""

    DEFAULT_CSS = LIST_CSS.format(name="PickTabScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self._title, self._choices = title, choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title)
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("tab")
        for _, label in self._choices:
            table.add_row(label)
        table.focus()

    @on(DataTable.RowSelected)
    def _picked(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self._choices[event.cursor_row][0])


@dataclass
class Side:
    """One side of a comparison: its tab, its label and the recording compared."""

    pane_id: str
    label: str
    recording: Recording


@dataclass
class Jump:
    pane_id: str
    position: int  # index into that side's recording frames


class DiffScreen(ModalScreen["Jump | None"]):
    DEFAULT_CSS = LIST_CSS.format(name="DiffScreen") + """
    DiffScreen .diff-summary { height: auto; padding: 0 1; }
    DiffScreen .diff-summary.-same { color: $success; }
    DiffScreen .diff-summary.-differ { color: $error; text-style: bold; }
    DiffScreen .diff-timing { height: auto; padding: 0 1; color: $text-muted; }
    DiffScreen DataTable { height: 1fr; max-height: 40%; }
    DiffScreen .diff-sides { height: 1fr; border-top: solid $panel; }
    DiffScreen .diff-side { width: 1fr; padding: 0 1; }
    DiffScreen .diff-side-title { text-style: bold; color: $accent; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("enter", "jump('a')", "Jump (A)", show=True),
        Binding("b", "jump('b')", "Jump (B)"),
        Binding("i", "ignore", "Ignore paths"),
        Binding("k", "key", "Match by"),
    ]

    def __init__(self, a: Side, b: Side, *, ignore: list[str] | None = None, key: str | None = None) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.ignore = list(ignore or [])
        self.key = key
        self.result: D.Diff | None = None
        self._rows: list[tuple[str, str, int | None, int | None]] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"A: {self.a.label}   ⇄   B: {self.b.label}")
            yield Static("Enter jumps to the difference in A, b in B · i ignore paths · k match by a path · Esc",
                         classes="hint")
            yield Static("", classes="diff-summary")
            yield Static("", classes="diff-timing", markup=False)
            yield DataTable(cursor_type="row", id="differences")
            with Horizontal(classes="diff-sides"):
                with VerticalScroll(classes="diff-side"):
                    yield Static("A", classes="diff-side-title", markup=False, id="a-title")
                    yield Static("", markup=False, id="a-body")
                with VerticalScroll(classes="diff-side"):
                    yield Static("B", classes="diff-side-title", markup=False, id="b-title")
                    yield Static("", markup=False, id="b-body")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("kind", "difference")
        self.compare()
        table.focus()

    def compare(self) -> None:
        self.result = r = D.diff(self.a.recording, self.b.recording, ignore=self.ignore, key=self.key)
        self._rows = r.differences()
        summary = self.query_one(".diff-summary", Static)
        by = "_sequence" if r.key == D.SEQUENCE else r.key
        ign = f", ignoring {', '.join(r.ignore)}" if r.ignore else ""
        if r.same:
            text = f"✔ same: data and end agree ({r.alike:,} chunks alike by {by}{ign})"
        else:
            text = (f"✖ {len(self._rows):,} difference(s): {len(r.missing)} missing in B, {len(r.extra)} extra, "
                    f"{len(r.changed)} changed, {len(r.reordered)} reordered"
                    + (", end differs" if r.end_differences else "") + f"  (matched by {by}{ign})")
        summary.update(text)
        summary.set_class(r.same, "-same")
        summary.set_class(not r.same, "-differ")
        ta, tb = r.timing_a, r.timing_b
        ms = D.ms
        self.query_one(".diff-timing", Static).update(
            f"{'':<12}{'chunks':>10}{'first chunk':>14}{'Δt p50':>12}{'Δt p99':>12}{'total':>14}   end\n"
            f"{'A':<12}{ta.chunks:>10,}{ms(ta.first_chunk):>14}{ms(ta.dt_p50):>12}{ms(ta.dt_p99):>12}"
            f"{ms(ta.total):>14}   {r.end_a}\n"
            f"{'B':<12}{tb.chunks:>10,}{ms(tb.first_chunk):>14}{ms(tb.dt_p50):>12}{ms(tb.dt_p99):>12}"
            f"{ms(tb.total):>14}   {r.end_b}")
        table = self.query_one(DataTable)
        table.clear()
        for kind, text, _, _ in self._rows:
            table.add_row(kind, text)
        self._show(0)

    def _show(self, row: int) -> None:
        def body(side: Side, pos: int | None) -> str:
            if pos is None:
                return "(not in this one)"
            f = side.recording.frames[pos]
            return f"chunk #{f.recv}  seq {f.seq}  +{f.t:,.1f} ms  {f.size} bytes\n{pretty(f.data)}"

        if not self._rows:
            self.query_one("#a-body", Static).update(self._end_text(self.a))
            self.query_one("#b-body", Static).update(self._end_text(self.b))
            return
        kind, _, pa, pb = self._rows[min(row, len(self._rows) - 1)]
        if kind == "end":
            self.query_one("#a-body", Static).update(self._end_text(self.a))
            self.query_one("#b-body", Static).update(self._end_text(self.b))
        else:
            self.query_one("#a-body", Static).update(body(self.a, pa))
            self.query_one("#b-body", Static).update(body(self.b, pb))

    @staticmethod
    def _end_text(side: Side) -> str:
        end = side.recording.end
        if end is None:
            return "no end (still running, or cut short)"
        text = f"{end.state} after {end.chunks:,} chunk(s), {end.elapsed:,.1f} ms"
        if end.error:
            text += f"\nerror {end.error.get('code')} {end.error.get('name')}: {end.error.get('message')}"
        if end.state == "completed":
            text += "\nfinal data:\n" + pretty(end.final)
        return text

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_jump("a")

    def action_jump(self, side: str) -> None:
        table = self.query_one(DataTable)
        if not self._rows or table.cursor_row is None:
            return
        _, _, pa, pb = self._rows[table.cursor_row]
        if side == "a" and pa is None:
            side = "b"
        elif side == "b" and pb is None:
            side = "a"
        pos = pa if side == "a" else pb
        if pos is None:
            self.notify("this difference is about the end: no chunk to jump to", severity="warning")
            return
        self.dismiss(Jump(self.a.pane_id if side == "a" else self.b.pane_id, pos))

    def action_ignore(self) -> None:
        from console.screens.dialogs import PromptScreen

        def chosen(text: str | None) -> None:
            if text is not None:
                self.ignore = [p.strip() for p in text.split(",") if p.strip()]
                self.compare()

        self.app.push_screen(PromptScreen("Ignore paths", "Dotted JSON paths left out of every chunk and the final "
                                          "data, comma-separated (e.g. timestamp, rows.*.at).",
                                          ", ".join(self.ignore)), chosen)

    def action_key(self) -> None:
        from console.screens.dialogs import PromptScreen

        def chosen(text: str | None) -> None:
            if text is not None:
                self.key = text or None
                self.compare()

        self.app.push_screen(PromptScreen("Match chunks by", "A JSON path in each chunk's data (e.g. id); "
                                          "empty = _sequence.", self.key or ""), chosen)
