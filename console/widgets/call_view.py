"""One call's pane: a status line (state, chunks, rates, time to first chunk,
elapsed), findings (gaps, reordering, protocol lint), a throughput sparkline,
the chunk log, and a detail area for the selected chunk, the final data or the
error. Everything is redrawn from the StreamRecord by `sync()`, which the app
calls at a fixed rate for the visible pane only."""
from __future__ import annotations

import json
import re

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Sparkline, Static

from console.core.stream_store import State, StreamRecord
from console.core.views.cells import compact, json_default
from console.widgets.chunk_log import ChunkLog
from console.widgets.send_box import SendBox
from console.widgets.sparkline import FastSparkline
from console.widgets.views.stream_views import StreamViews
from console.widgets.views.table_view import TableView

STATE_GLYPHS = {
    State.STARTING: "…", State.RUNNING: "▶", State.COMPLETED: "✔", State.FAILED: "✖",
    State.CANCELLED: "■", State.STALLED: "⏸",
}
SPARK_SECONDS = 60
_DIGITS = re.compile(r"[\d,]")
STATUS_HZ = 10  # the status line's redraws a second at most while counters change
DETAIL_LIMIT = 200_000  # characters of pretty JSON shown for one value


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def route_text(route: list[str], address: str) -> str:
    """`via o://leader -> o://leader/alpha  to o://leader/alpha/beta` (the relays, then the target)."""
    hops = len(route)
    return f"via {' -> '.join(route)}  to {address}  ({hops} relay{'s' if hops != 1 else ''})"


def pretty(value) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=_default)
    except Exception:
        text = repr(value)
    if len(text) > DETAIL_LIMIT:
        text = text[:DETAIL_LIMIT] + f"\n… ({len(text) - DETAIL_LIMIT:,} more characters)"
    return text


_default = json_default  # bytes: their text when UTF-8, else <N bytes>


class CallView(Vertical):
    DEFAULT_CSS = """
    CallView { height: 1fr; }
    CallView .call-status { height: 1; padding: 0 1; background: $boost; }
    CallView .call-route { height: 1; padding: 0 1; color: $text-muted; }
    CallView .call-findings { height: auto; max-height: 3; padding: 0 1; color: $stream-reorder; }
    CallView .call-findings.-clean { color: $text-muted; }
    CallView Sparkline { height: 2; margin: 0 1; }
    CallView .call-columns { height: 1; padding: 0 0; color: $text-muted; text-style: bold; }
    CallView .call-detail { height: auto; max-height: 35%; border-top: solid $panel; padding: 0 1; }
    CallView .call-detail.-unary { height: 1fr; max-height: 100%; }
    CallView .call-detail.-unary.-valued { height: auto; max-height: 30%; }
    CallView .call-detail.-beside-view { max-height: 25%; }
    CallView .call-end.-failed { color: $stream-error; text-style: bold; }
    CallView .call-end.-completed { color: $success; }
    CallView .call-end.-cancelled { color: $warning; }
    """

    def __init__(self, record: StreamRecord, *, settings=None, save=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record = record
        self._log = ChunkLog(record, classes="call-log") if record.streaming else None
        self.views = StreamViews(record, self._log, settings, save)  # v cycles them
        self.send_box = SendBox(record.outbox) if record.outbox is not None else None  # a bidirectional call
        self.selected = None  # the chunk shown in the detail area
        self._version = -1
        self._state: State | None = None
        self._spark_second = -1
        self._status_at = 0.0
        self._columns_shown: Text | None = None
        self._columns_shape = ""  # the columns line without its numbers, as last drawn
        self._mounted = False
        self._texts: dict[Static, str] = {}
        self._views_seen: tuple = ()

    def on_mount(self) -> None:
        self._mounted = True
        if self.record.streaming and self.views.name != "log":
            self.views.show(self.views.name, remember=False)
        self.sync()

    def on_unmount(self) -> None:
        self._mounted = False

    def compose(self) -> ComposeResult:
        r = self.record
        yield Static(self._status_text(), classes="call-status")
        if r.route:  # a call through a leader: the relays it passes, as the network's addresses say
            yield Static(route_text(r.route, r.address), classes="call-route", markup=False)
        if r.streaming:
            yield Static("", classes="call-findings -clean")
            yield FastSparkline([], classes="call-spark")
            yield Static("", classes="call-columns")
            yield self._log
            yield from self.views.stream_widgets()
        with VerticalScroll(classes="call-detail" + ("" if r.streaming else " -unary")):
            yield Static("", classes="call-end")
            yield Static("", classes="call-detail-body", markup=False)
        if self.send_box is not None:  # what we send, below what comes back
            yield self.send_box

    @property
    def log(self) -> ChunkLog | None:
        return self._log

    def cycle_view(self) -> str:
        """The next view (remembered for this method); returns its name."""
        name = self.views.cycle()
        if not self.record.streaming and self.views.value is not None:
            self.views.value.remove()
            self.views.value = None
            self._sync_end()
        self.invalidate()
        self.sync()
        target = self.views.focus_target
        if target is not None:
            self.call_after_refresh(target.focus)
        return name

    def invalidate(self) -> None:
        """Redraw at the next sync even if the record did not change (e.g. a new filter)."""
        self._version = -1

    def sync(self, now: float | None = None) -> None:
        """Bring the pane up to date with the record."""
        if not self._mounted or not self.is_attached or not self.children:
            return
        record = self.record
        now = record.clock() if now is None else now
        state = record.effective_state(now)
        if record.streaming:
            self.views.sync(now)
        views = self.views.signature()
        if views[0] != (self._views_seen[0] if self._views_seen else None):
            self.app.refresh_bindings()  # the footer's keys depend on the view (p: paths)
            if record.streaming:  # the table and the chart keep most of the pane
                self.query_one(".call-detail").set_class(views[0] in ("table", "chart"), "-beside-view")
        if self.send_box is not None:
            self.send_box.sync()
        views_changed = views != self._views_seen
        changed = record.version != self._version or state is not self._state or views_changed
        self._views_seen = views
        if not changed and (state.ended or now - self._status_at < 0.25):
            return  # the clock-driven fields (elapsed, rates) need no more than 4 Hz
        # one-line widgets of fixed height: no layout pass (a reflow per refresh costs ~20 ms)
        try:
            status = self.query_one(".call-status", Static)
        except NoMatches:  # being torn down (the app quitting)
            return
        # under a stream the counters change at every tick; redrawing these lines costs ~0.5 ms
        # each a frame, and nobody reads them 30 times a second: at most STATUS_HZ (a new state,
        # view or anything but a number at once)
        due = state is not self._state or views_changed or now - self._status_at >= 1 / STATUS_HZ
        if due:
            self._status_at = now
            status.update(self._status_text(now), layout=False)
        if record.streaming:
            columns = self._columns_text()
            shape = _DIGITS.sub("", columns.plain)
            if columns != self._columns_shown and (due or shape != self._columns_shape):
                self._columns_shown, self._columns_shape = columns, shape
                self.query_one(".call-columns", Static).update(columns, layout=False)
        if not changed:
            return
        self._version = record.version
        self._state = state
        log = self.log
        if log is not None:
            if log.display:
                log.sync()
            self._sync_findings()
        second = int(record.elapsed(now))
        if record.streaming and (second != self._spark_second or state.ended):
            self._spark_second = second
            history = record.rate_history(SPARK_SECONDS, now)
            # a fixed 60 s timeline, newest at the right
            self.query_one(Sparkline).data = [0.0] * (SPARK_SECONDS - len(history)) + history
        self._sync_end()

    def _status_text(self, now: float | None = None) -> Text:
        r = self.record
        state = r.effective_state(now)
        text = Text()
        if r.tap_of is not None:  # a copy of someone's stream, not a call of ours
            text.append(" TAP ", style="bold reverse")
            text.append(" ")
        text.append(f"{STATE_GLYPHS[state]} {state.value.upper()}", style="bold")
        if r.resumed_at:
            text.append(f"  resumed at seq {r.resumed_at[-1]:,}", style="bold yellow")
            if len(r.resumed_at) > 1:
                text.append(f" ({len(r.resumed_at)}×)", style="yellow")
        if not r.streaming:
            text.append(f"  {r.address} {r.method}", style="dim")
        if r.outbox is not None:
            text.append(f"  ⇄ sent {r.outbox.count:,}")
        if r.streaming:
            chunks_s, bytes_s = r.rates(now)
            text.append(f"  {'← ' if r.outbox is not None else ''}chunks {r.count:,}")
            if r.first_chunk_at is not None:  # early in the line: narrow panes still show it
                text.append(f"  first {r.first_chunk_at * 1000:.1f} ms")
            text.append(f"  {chunks_s:,.0f}/s  {human_bytes(bytes_s)}/s  total {human_bytes(r.bytes)}")
        text.append(f"  elapsed {r.elapsed(now):.3f} s")
        return text

    def _columns_text(self) -> Text:
        r = self.record
        header = self.views.header()
        if header is not None:
            return Text(header, style="bold")
        log = self.log
        text = Text(log.columns_header() if log is not None else "")
        if log is not None and log.filter_text is not None:
            text.append(f"   filter “{log.filter_text}”: {log.matches:,} of {r.held:,}", style="bold")
        if log is not None and not log.following:
            text.append(f"   ⏸ paused · {log.new_below:,} new below · End follows", style="bold reverse")
        if r.dropped:
            text.append(f"   oldest {r.dropped:,} dropped (keeps {r.max_chunks:,})", style="dim")
        return text

    def _sync_findings(self) -> None:
        r = self.record
        findings = r.lint()
        widget = self.query_one(".call-findings", Static)
        order = f"ordered by {r.sequence_path}" if r.sequence_path else "ordered by _sequence"
        if findings:
            self._update(widget, f"⚠ {'; '.join(findings)}  ({order})")
            widget.set_class(False, "-clean")
        else:
            self._update(widget, f"no gaps, duplicates or reordering ({order})")
            widget.set_class(True, "-clean")

    def _update(self, widget: Static, text: str) -> None:
        """Update only on change: each update of an auto-height widget reflows the layout."""
        if self._texts.get(widget) != text:
            self._texts[widget] = text
            widget.update(text)

    def _sync_end(self) -> None:
        r = self.record
        end = self.query_one(".call-end", Static)
        body = self.query_one(".call-detail-body", Static)
        state = r.state
        for name in ("-failed", "-completed", "-cancelled"):
            end.set_class(state.value == name[1:], name)
        if state is State.FAILED and r.error is not None:
            line = f"✖ {r.error.code} {r.error.name}: {r.error.message}"
            if r.missing_final:
                line += "  (no final frame)"
            if r.streaming:
                line += f"  after {r.count:,} chunk(s)"
            self._update(end, line)
        elif state is State.COMPLETED:
            self._update(end, f"✔ completed in {r.elapsed() * 1000:.1f} ms" +
                       (f", {r.count:,} chunks" if r.streaming else ""))
        elif state is State.CANCELLED:
            self._update(end, f"■ cancelled after {r.count:,} chunk(s); the node was told to stop")
        else:
            self._update(end, "")
        if self.selected is not None:
            c = self.selected
            flags = f"  flags: {', '.join(c.flag_names)}" if c.flags else ""
            self._update(body, f"chunk #{c.index}  seq {c.sequence}  +{c.at * 1000:.1f} ms  "
                        f"{c.size} bytes{flags}\n{pretty(c.data)}")
        elif state is State.COMPLETED and not r.streaming:
            self._show_unary(r.final)
            self._update(body, "")
        elif state is State.COMPLETED and self.views.name in ("table", "chart"):
            # beside a table or a chart the rows are the point: the final frame on one line
            self._update(body, "final data: " + compact(r.final))
        elif state is State.COMPLETED:
            self._update(body, "final data:\n" + pretty(r.final))
        elif state is State.FAILED and r.error is not None and r.error.details is not None:
            self._update(body, "details:\n" + pretty(r.error.details))
        else:
            self._update(body, "")

    def _show_unary(self, value) -> None:
        """A unary result as a table of records or a folding tree (v switches)."""
        if self.views.value is not None:
            return
        self.query_one(".call-detail").add_class("-valued")
        self.mount(self.views.unary_value(value))

    @on(ChunkLog.Chosen)
    def _chunk_chosen(self, event: ChunkLog.Chosen) -> None:
        from console.screens.value import ValueScreen

        c = event.chunk
        self.app.push_screen(ValueScreen(c.data, f"{self.record.title} › chunk #{c.index} ({c.size:,} bytes)"))

    @on(TableView.RowChosen)
    def _row_chosen(self, event: TableView.RowChosen) -> None:
        from console.screens.value import ValueScreen

        event.stop()
        source = f" from chunk #{event.chunk + 1}" if event.chunk is not None else ""
        self.app.push_screen(ValueScreen(event.record, f"{self.record.title} › row {event.row + 1}{source}"))

    @on(ChunkLog.Selected)
    def _chunk_selected(self, event: ChunkLog.Selected) -> None:
        self.selected = event.chunk
        self._sync_end()

