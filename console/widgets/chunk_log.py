"""The firehose view of one stream: a Line-API ScrollView over a StreamRecord's
ring of chunks. It renders only the visible lines, so a million chunks cost
nothing on screen; `sync()` (called at a fixed rate, never per chunk) grows the
virtual size and follows the tail. Scrolling up (or moving the cursor up)
pauses following; the header then says how many chunks are new below."""
from __future__ import annotations

import re
import time
from bisect import bisect_left

import orjson
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.core.stream_store import (AFTER_FINAL, BADKEY, DUPLICATE, GAP, NOKEY, REORDERED, Chunk, StreamRecord,
                                         value_at_path)
from console.core.views.cells import cell_text, json_default

# A firehose (more new chunks than lines in view since the last redraw) is redrawn at most
# this often: each redraw replaces every line (4-7 ms a frame at 160x50), faster than anyone
# reads; the refresh timer's other ticks leave the log alone, for the stream's own work
FIREHOSE_HZ = 15
PREVIEW_LIMIT = 400  # characters of a chunk's JSON rendered on its line
FLAG_TEXTS = ((GAP, "GAP"), (REORDERED, "ORD"), (DUPLICATE, "DUP"), (AFTER_FINAL, "LATE"), (NOKEY, "NOKEY"),
              (BADKEY, "BADKEY"))


def flag_text(flags: int) -> str:
    for bit, text in FLAG_TEXTS:
        if flags & bit:
            return text
    return ""


def _json_text(data) -> str:
    try:
        return orjson.dumps(data, default=_default).decode("utf-8", "replace")
    except Exception:
        return repr(data)


def preview(data) -> str:
    return _json_text(data)[:PREVIEW_LIMIT]


_default = json_default  # bytes: their text when UTF-8, else <N bytes>

# JSON tokens of a preview, for colour: a string (a key when a colon follows), a number, a literal
_TOKENS = re.compile(r'("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(true|false|null)')
FIELD_WIDTH = 24  # widest a fields-view column is drawn


# the columns before the data: (name, header, narrowest width); the data column gets what is left
COLUMN_HEADERS = (("index", "#"), ("seq", "seq"), ("at", "+t ms"), ("delta", "Δt ms"), ("size", "bytes"),
                  ("flag", "flag"))
DROP_ORDER = ("delta", "size", "at")  # dropped in this order when the data column would be too narrow
MIN_DATA = 24
SEQ_LIMIT = 12  # a longer sequence value (e.g. ordering by a timestamp) is cut


def _cells(chunk: Chunk) -> dict[str, str]:
    seq = "-" if chunk.sequence is None else str(chunk.sequence)
    return {"index": str(chunk.index), "seq": seq[:SEQ_LIMIT], "at": f"{chunk.at * 1000:.1f}",
            "delta": f"{chunk.delta * 1000:.2f}", "size": str(chunk.size), "flag": flag_text(chunk.flags)}


class Columns:
    """Column widths fitted to what the chunks hold (never shrinking while a pane
    lives, so lines do not jitter), the data column taking the width left over."""

    def __init__(self) -> None:
        self.widths = {name: len(header) for name, header in COLUMN_HEADERS}

    def fit(self, chunk: Chunk) -> dict[str, str]:
        """Widen to a chunk's cells; returns them (for `prefix`)."""
        widths = self.widths
        cells = _cells(chunk)
        for name, text in cells.items():
            if len(text) > widths[name]:
                widths[name] = len(text)
        return cells

    def shown(self, width: int) -> list[str]:
        names = [name for name, _ in COLUMN_HEADERS]
        for name in DROP_ORDER:
            if self._data_width(names, width) >= min(MIN_DATA, max(8, width // 3)):
                break
            names.remove(name)
        return names

    def _data_width(self, names: list[str], width: int) -> int:
        return width - sum(self.widths[n] + 1 for n in names) - 1

    def header(self, width: int) -> str:
        labels = dict(COLUMN_HEADERS)
        names = self.shown(width)
        return " ".join(f"{labels[n]:>{self.widths[n]}}" if n != "flag" else f"{labels[n]:<{self.widths[n]}}"
                        for n in names) + " data"

    def prefix(self, chunk: Chunk, width: int, cells: dict | None = None, names: list | None = None) -> str:
        """The cells before the data, with the space that follows them."""
        cells = _cells(chunk) if cells is None else cells
        names = self.shown(width) if names is None else names
        widths = self.widths
        head = " ".join(f"{cells[n]:>{widths[n]}}" if n != "flag" else f"{cells[n]:<{widths[n]}}" for n in names)
        return head + " "

    def line(self, chunk: Chunk, width: int) -> str:
        return self.prefix(chunk, width) + preview(chunk.data)


def format_chunk(chunk: Chunk, width: int = 200) -> str:
    columns = Columns()
    columns.fit(chunk)
    return columns.line(chunk, width)


def json_segments(text: str, style, styles: dict) -> list[Segment]:
    """A JSON preview cut into coloured segments (keys, strings, numbers, literals).
    `styles` maps key/string/number/literal to a colour added to `style`."""
    out: list[Segment] = []
    append = out.append
    key, string = style + styles["key"], style + styles["string"]
    number, literal = style + styles["number"], style + styles["literal"]
    at = 0
    for m in _TOKENS.finditer(text):
        start = m.start()
        if start > at:
            append(Segment(text[at:start], style))
        quoted, colon, digits, word = m.groups()
        if quoted is not None:
            if colon:
                append(Segment(quoted, key))
                append(Segment(colon, style))
            else:
                append(Segment(quoted, string))
        elif digits is not None:
            append(Segment(digits, number))
        else:
            append(Segment(word, literal))
        at = m.end()
    if at < len(text):
        append(Segment(text[at:], style))
    return out


class ChunkLog(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {
        "chunk-log--gap",
        "chunk-log--reordered",
        "chunk-log--duplicate",
        "chunk-log--late",
        "chunk-log--unjudged",
        "chunk-log--cursor",
        "chunk-log--key",
        "chunk-log--string",
        "chunk-log--number",
        "chunk-log--literal",
    }
    DEFAULT_CSS = """
    ChunkLog { height: 1fr; background: $surface; overflow-x: hidden; scrollbar-size-vertical: 0; }
    ChunkLog > .chunk-log--gap { color: $stream-gap; text-style: bold; }
    ChunkLog > .chunk-log--reordered { color: $stream-reorder; text-style: bold; }
    ChunkLog > .chunk-log--duplicate { color: $stream-reorder; text-style: italic; }
    ChunkLog > .chunk-log--late { color: $stream-error; }
    ChunkLog > .chunk-log--unjudged { color: $text-muted; text-style: italic; }
    ChunkLog > .chunk-log--cursor { background: $accent 40%; }
    ChunkLog:focus > .chunk-log--cursor { background: $accent 70%; }
    ChunkLog > .chunk-log--key { color: $text-primary; }
    ChunkLog > .chunk-log--string { color: $text-success; }
    ChunkLog > .chunk-log--number { color: $text-accent; }
    ChunkLog > .chunk-log--literal { color: $text-warning; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-20)", "Page up", show=False),
        Binding("pagedown", "cursor(20)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "follow", "Follow tail", show=False),
        Binding("enter", "select", "Show chunk", show=False),
        Binding("left", "shift(-1)", "Data left", show=False),
        Binding("right", "shift(1)", "Data right", show=False),
    ]

    class Selected(Message):
        """The operator picked a chunk (enter or click)."""

        def __init__(self, log: "ChunkLog", chunk: Chunk | None) -> None:
            super().__init__()
            self.log = log
            self.chunk = chunk

    class Chosen(Message):
        """Enter on a chunk: show it whole."""

        def __init__(self, log: "ChunkLog", chunk: Chunk) -> None:
            super().__init__()
            self.log = log
            self.chunk = chunk

    def __init__(self, record: StreamRecord, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record = record
        self.following = True
        self.cursor: int | None = None  # absolute 0-based receive index
        self._anchor: int | None = None  # absolute index of the top line while paused
        self._seen_when_paused = 0
        self._synced_version = -1
        self._synced_at = 0.0  # time.monotonic() of the last catch-up that redrew
        self._styles: dict = {}
        self._styles_key: tuple | None = None  # (theme, focus) the styles were made for
        self.columns = Columns()
        self.filter_text: str | None = None  # show only chunks whose JSON contains this
        self._matches: list[int] = []  # absolute indexes of matching chunks (filter on)
        self._scanned = 0  # chunks checked against the filter so far
        self._json_theme: str | None = None
        self._json_cache: dict = {}
        self.fields: list[str] | None = None  # the fields view: these JSON paths as columns
        self._field_widths: list[int] = []
        self._frame: dict = {}  # during render_lines: index -> (chunk, its cells)
        self._geometry: tuple[int, int, int] | None = None  # during render_lines: top line, scroll x, width
        self.data_x = 0  # how far the data column is shifted left (← →)
        self._names: list[str] = []  # during render_lines: the columns shown
        self._plain = False  # this frame draws lines without JSON colours (a firehose)
        self._frame_count = 0  # record.count at the last frame

    def set_fields(self, paths: list[str] | None) -> None:
        """Show the values at these JSON paths as columns instead of the JSON preview."""
        self.fields = list(paths) if paths else None
        self.data_x = 0
        self._field_widths = [min(FIELD_WIDTH, max(4, len(p))) for p in self.fields or []]
        record = self.record  # fitted to the first and the newest chunks (and widened as wider ones are drawn)
        sample = list(range(record.first_held, min(record.count, record.first_held + 50)))
        sample += range(max(record.first_held + 50, record.count - 50), record.count)
        for index in sample:
            self._field_text(record.data_at(index))
        self.refresh()

    def columns_header(self) -> str:
        """The header line above the log: the fitted columns, then data or the chosen fields
        (shifted as the lines are: ◀ when some are left of view, ▶ when some are right of it)."""
        head = self.header()
        if not self.fields:
            if self.data_x:
                return head[:-len("data")] + f"◀ data from character {self.data_x + 1}"
            return head
        text = "  ".join(p[:w].ljust(w) for p, w in zip(self.fields, self._field_widths))
        prefix = head[:-len("data")]
        if self.data_x:  # in the space before the first field shown
            prefix = prefix[:-1] + "◀"
        return prefix + self._marked(text[self.data_x:], self._data_room(len(prefix)))

    @staticmethod
    def _marked(text: str, room: int) -> str:
        """`text` cut to `room` cells, ending in ▶ when fields are out of view on the right."""
        if len(text) <= room:
            return text
        return text[:max(0, room - 1)] + "▶" if room > 1 else text[:room]

    def _data_room(self, prefix: int) -> int:
        return max(0, (self.size.width or 80) - prefix)

    def _fields_width(self) -> int:
        return sum(self._field_widths) + 2 * max(0, len(self._field_widths) - 1)

    def action_shift(self, step: int) -> None:
        """Shift the data column (the fields, or the JSON) left or right: by a field in the
        fields view, by 16 characters in the log; the columns before it stay put."""
        prefix = len(self.header()) - len("data")
        room = self._data_room(prefix)
        if self.fields:
            starts, at = [], 0
            for w in self._field_widths:
                starts.append(at)
                at += w + 2
            limit = max(0, self._fields_width() - room)
            if step > 0:  # the next field first, but no further than shows the last one's end
                x = self.data_x if self.data_x >= limit else min(
                    limit, next((x for x in starts if x > self.data_x), limit))
            else:
                x = next((x for x in reversed(starts) if x < self.data_x), 0)
        else:
            x = max(0, min(PREVIEW_LIMIT - room, self.data_x + 16 * step))
        if x != self.data_x:
            self.data_x = max(0, x)
            self.refresh()

    def _field_text(self, data) -> str:
        parts = []
        widths = self._field_widths
        for i, path in enumerate(self.fields or []):
            text = cell_text(value_at_path(data, path))
            w = widths[i]
            if len(text) > w and w < FIELD_WIDTH:
                widths[i] = w = min(FIELD_WIDTH, len(text))
            parts.append(text[:w - 1] + "…" if len(text) > w else text.ljust(w))
        return "  ".join(parts)

    # -- lines <-> chunks (all chunks held, or only those matching the filter) ------------

    def _line_count(self) -> int:
        return self.record.held if self.filter_text is None else len(self._matches)

    def _index_at(self, line: int) -> int | None:
        if line < 0 or line >= self._line_count():
            return None
        return self.record.first_held + line if self.filter_text is None else self._matches[line]

    def _line_of(self, index: int) -> int:
        """The line showing `index`, or the next one after it."""
        if self.filter_text is None:
            return max(0, index - self.record.first_held)
        return bisect_left(self._matches, index)

    def set_filter(self, text: str | None) -> None:
        """Show only chunks whose JSON contains `text` (case-insensitive); None shows all."""
        self.filter_text = text.lower() if text else None
        self._matches = []
        self._scanned = self.record.first_held
        self.cursor = None
        self._synced_version = -1
        self.resume()

    def _scan(self) -> None:
        record = self.record
        first = record.first_held
        if self._matches and self._matches[0] < first:  # dropped out of the ring
            del self._matches[:bisect_left(self._matches, first)]
        needle = self.filter_text
        start = max(self._scanned, first)
        for index in range(start, record.count):
            chunk = record.chunk(index)
            if chunk is not None and needle in _json_text(chunk.data).lower():
                self._matches.append(index)
        self._scanned = record.count

    @property
    def matches(self) -> int:
        return len(self._matches)

    # -- driven by the screen's refresh timer --------------------------------------

    def sync(self) -> None:
        """Catch up with the record (cheap when nothing changed)."""
        record = self.record
        if record.version != self._synced_version:  # new chunks, or flags re-judged (o)
            now = time.monotonic()
            if (self.following and record.count - self._frame_count > self.size.height
                    and now - self._synced_at < 1 / FIREHOSE_HZ):
                return  # a firehose: every line in view is new at each redraw; fewer of them
            self._synced_at = now
            self._synced_version = record.version
            if self.filter_text is not None:
                self._scan()
            self._set_lines(self._line_count())
            self.refresh()
        if self.following:
            self._follow()
        elif self._anchor is not None:
            # keep the same chunks in view while older ones drop out of the ring
            y = self._line_of(self._anchor)
            if int(self.scroll_y) != y:
                self.scroll_to(y=y, animate=False, immediate=True)

    def _set_lines(self, lines: int) -> None:
        """A new line count without a layout pass: the log's own size does not depend on
        it (1fr high, no scrollbars), and a reflow per refresh cost ~20 ms under a firehose."""
        size = Size(self.scrollable_content_region.width, lines)
        if size != self.virtual_size:
            self.set_reactive(ChunkLog.virtual_size, size)
            self._scroll_update(size)

    def _follow(self) -> None:
        y = self._bottom_top()
        if int(self.scroll_y) != y:
            self.scroll_to(y=y, animate=False, immediate=True)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, self._line_count())
        if self.following:
            self.call_after_refresh(self._follow)
        else:  # e.g. the detail area below grew when a chunk was picked
            self.call_after_refresh(self._keep_cursor_in_view)

    @property
    def new_below(self) -> int:
        """Chunks that arrived since following paused."""
        return 0 if self.following else max(0, self.record.count - self._seen_when_paused)

    def pause(self) -> None:
        if self.following:
            self.following = False
            self._seen_when_paused = self.record.count
            self._anchor = self._index_at(self._bottom_top())
        elif self._anchor is None:
            self._anchor = self._index_at(int(self.scroll_y))

    def _bottom_top(self) -> int:
        """The top line when the tail is in view."""
        return max(0, self._line_count() - self.scrollable_content_region.height)

    def resume(self) -> None:
        self.following = True
        self._anchor = None
        self.cursor = None
        self._synced_version = -1
        self.sync()

    # -- rendering ---------------------------------------------------------------

    def render_lines(self, crop):
        # styles once per theme and focus, not per frame (component styles cost ~0.5 ms each)
        key = (self.app.theme, self.has_focus)
        if self._styles_key != key:
            self._styles_key = key
            base = self.rich_style
            component = self.get_component_rich_style
            self._styles = {
                "base": base,
                GAP: base + component("chunk-log--gap"),
                REORDERED: base + component("chunk-log--reordered"),
                DUPLICATE: base + component("chunk-log--duplicate"),
                "late": base + component("chunk-log--late"),
                "unjudged": base + component("chunk-log--unjudged"),
                "cursor": component("chunk-log--cursor"),
                **self._json_styles(component),
            }
        top = int(self.scroll_y)
        frame = self._frame = {}  # the chunks in view and their cells: built once per frame
        columns = self.columns
        for y in range(self.size.height):  # widths fitted to the chunks in view
            index = self._index_at(top + y)
            chunk = self.record.chunk(index) if index is not None else None
            if chunk is not None:
                frame[index] = (chunk, columns.fit(chunk))
                if self.fields:  # field widths fitted to every line in view before any is drawn
                    self._field_text(chunk.data)
        self._names = columns.shown(self.size.width)
        # a firehose replaces every line in view each frame, faster than anyone reads: such
        # frames skip the JSON colours (about 40 of a line's 60 us); they come back as it slows
        count = self.record.count
        self._plain = self.following and count - self._frame_count > self.size.height
        self._frame_count = count
        self._geometry = (top, int(self.scroll_x), self.size.width)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = {}
            self._geometry = None

    def notify_style_update(self) -> None:
        self._styles_key = None  # a class or theme change: look the styles up again
        super().notify_style_update()

    def header(self) -> str:
        """The column titles, aligned with the lines."""
        return self.columns.header(self.size.width or 80)

    def _json_styles(self, component) -> dict:
        """JSON colours, the foreground only (so a flag's or the cursor's background stays);
        looked up once per theme, not per frame."""
        theme = self.app.theme
        if self._json_theme != theme:
            self._json_theme = theme
            self._json_cache = {name: Style(color=component(f"chunk-log--{name}").color)
                                for name in ("key", "string", "number", "literal")}
        return self._json_cache

    def render_line(self, y: int) -> Strip:
        geometry = self._geometry  # set for the frame by render_lines
        if geometry is None:
            geometry = (int(self.scroll_y), int(self.scroll_x), self.size.width)
        top, scroll_x, width = geometry
        index = self._index_at(top + y)
        cached = self._frame.get(index)
        chunk, cells = cached if cached is not None else (
            self.record.chunk(index) if index is not None else None, None)
        styles = self._styles
        if chunk is None:
            return Strip.blank(width, styles["base"])
        flags = chunk.flags
        if not flags:
            style = styles["base"]
        elif flags & GAP:
            style = styles[GAP]
        elif flags & REORDERED:
            style = styles[REORDERED]
        elif flags & DUPLICATE:
            style = styles[DUPLICATE]
        elif flags & AFTER_FINAL:
            style = styles["late"]
        else:  # NOKEY / BADKEY: not judged
            style = styles["unjudged"]
        if index == self.cursor:
            style = style + styles["cursor"]
        prefix = self.columns.prefix(chunk, width, cells, self._names if cells is not None else None)
        x = self.data_x  # the data column shifted by ← →; the columns before it stay
        if self.fields:
            segments = [Segment(prefix + self._field_text(chunk.data)[x:], style)]
        else:
            body = preview(chunk.data)[x:x + max(0, scroll_x + width - len(prefix))]
            if flags or self._plain:  # a flagged line keeps its flag's colour throughout
                text = prefix + body
                if not scroll_x and text.isascii():  # a cell per character: cut and pad here,
                    # the segments Strip.crop and extend_cell_length would make, without their work
                    text = text[:width]
                    if len(text) < width:
                        return Strip([Segment(text, style), Segment(" " * (width - len(text)), style)], width)
                    return Strip([Segment(text, style)], width)
                segments = [Segment(text, style)]
            else:
                segments = [Segment(prefix, style), *json_segments(body, style, styles)]
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, style)

    # -- navigation ----------------------------------------------------------------

    def _user_scrolled(self) -> None:
        if self.scroll_y >= self.max_scroll_y and self.cursor is None:
            if not self.following:
                self.resume()
            return
        if self.following:
            self.following = False
            self._seen_when_paused = self.record.count
        self._anchor = self._index_at(int(self.scroll_y))

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.call_after_refresh(self._user_scrolled)

    def _on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.call_after_refresh(self._user_scrolled)

    def action_cursor(self, step: int) -> None:
        lines = self._line_count()
        if not lines:
            return
        line = lines - 1 if self.cursor is None else self._line_of(self.cursor)
        self.cursor = self._index_at(max(0, min(lines - 1, line + step)))
        self.pause()
        self._keep_cursor_in_view()
        self.post_message(self.Selected(self, self.record.chunk(self.cursor)))

    def _keep_cursor_in_view(self) -> None:
        """Move the top line as little as possible so the cursor is visible."""
        if self.cursor is None or self._anchor is None:
            return
        height = max(1, self.scrollable_content_region.height)
        line = self._line_of(self.cursor)
        top = self._line_of(self._anchor)
        if line < top:
            top = line
        elif line >= top + height:
            top = line - height + 1
        self._anchor = self._index_at(top)
        self.scroll_to(y=top, animate=False, immediate=True)
        self.refresh()

    def action_first(self) -> None:
        self.cursor = self._index_at(0)
        self.action_cursor(0)

    def action_follow(self) -> None:
        self.resume()
        self.post_message(self.Selected(self, None))

    def action_select(self) -> None:
        self.action_cursor(0)
        chunk = self.record.chunk(self.cursor) if self.cursor is not None else None
        if chunk is not None:
            self.post_message(self.Chosen(self, chunk))

    def _on_click(self, event: events.Click) -> None:
        index = self._index_at(int(self.scroll_y) + event.y)
        if index is not None:
            self.cursor = index
            self.action_cursor(0)
