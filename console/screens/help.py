"""`?` / F1: what the console shows and every key."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

INTRO = """\
# olane console

**Left:** nodes → tool addresses → methods (`⇶` streams, `⇄` takes input, `!` asks
before running). Enter on a method opens its form; **F5** runs it. A node that lists no
methods still takes one typed by hand (`✎ type a method…`). A method that takes input
opens with a send box under its tab: one JSON value a line, Enter sends, ctrl+d ends
the input; what was sent shows above the box, what came back in the chunk log.

**Right:** one tab per call. A streaming call shows every chunk as it arrives:
receive order `#`, the node's `seq` (`_sequence`), time since start, Δt, size, and a
flag: `GAP` (sequences skipped), `ORD` (arrived late), `DUP` (seen before), `LATE`
(after the final frame), `NOKEY` / `BADKEY` (no whole number at `_sequence` or at the
path `o` orders by: that chunk was not judged, and the findings count them). The status line has state, chunks/s, bytes/s, time to the
first chunk, and pauses with an *N new* count when you scroll up or move the cursor;
**End** follows the tail again. **←** / **→** shift the data column (the JSON, or the
fields view's columns a field at a time: `◀` / `▶` in the header say more is out of
view). Enter on a chunk shows it whole; **/** filters
the chunks by text in their JSON. Each tab names its node (`· embedded`, or the end of
the peer id); **]** / **[** switch tabs. **g** or **:** jumps to a node, tool or method
by part of its name.

States: running · completed · failed (code and message) · cancelled · stalled
(nothing for 5 s).

## Keys
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; height: 85%; border: thick $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self._keys = bindings

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"| `{key}` | {what} |" for key, what in self._keys)
        with VerticalScroll():
            yield Markdown(INTRO + "| key | action |\n|---|---|\n" + rows +
                           "\n\nEvery action is also in the command palette (**ctrl+p**).")
