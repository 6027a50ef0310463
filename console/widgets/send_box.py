"""A bidirectional call's send box: what was sent (the newest values, the count)
above one input line. Enter sends the line (one JSON value a line: pasted lines
go one value each), ctrl+d ends the input. Redrawn from the record's Outbox by
`sync()`, at the call pane's fixed rate, never per value sent."""
from __future__ import annotations

import json

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from console.core.outbox import Outbox, parse_lines

SHOWN = 3  # newest sent values shown


class SendInput(Input):
    BINDINGS = [Binding("ctrl+d", "end_input", "end input", show=True)]

    class EndAsked(Message):
        pass

    def action_end_input(self) -> None:
        self.post_message(self.EndAsked())


class SendBox(Vertical):
    DEFAULT_CSS = """
    SendBox { height: auto; border-top: solid $panel; }
    SendBox .send-sent { height: 4; padding: 0 1; }
    SendBox SendInput { height: 3; }
    """

    class Send(Message):
        """Values to send (`end`: then the end of the input)."""

        def __init__(self, outbox: Outbox, values: list, end: bool = False) -> None:
            super().__init__()
            self.outbox = outbox
            self.values = values
            self.end = end

    def __init__(self, outbox: Outbox, **kwargs) -> None:
        super().__init__(**kwargs)
        self.outbox = outbox
        self._version = -1

    def compose(self) -> ComposeResult:
        yield Static(self._sent_text(), classes="send-sent", markup=False)
        yield SendInput(placeholder="send: one JSON value a line · Enter sends · ctrl+d ends the input",
                        id="send-input")

    @property
    def input(self) -> SendInput:
        return self.query_one(SendInput)

    def sync(self) -> None:
        outbox = self.outbox
        if outbox.version == self._version:
            return
        self._version = outbox.version
        self.query_one(".send-sent", Static).update(self._sent_text())
        if outbox.end_asked or outbox.error:
            self.input.disabled = True

    def _sent_text(self) -> Text:
        o = self.outbox
        text = Text()
        text.append(f"→ sent {o.count:,}", style="bold")
        if o.pending:
            text.append(f"  ({len(o.pending):,} waiting)")
        if o.ended:
            text.append("  · input ended", style="bold")
        elif o.end_asked:
            text.append("  · ending…")
        if o.error:
            text.append(f"  · stopped: {o.error}", style="bold red")
        for sequence, value in list(o.sent)[-SHOWN:][::-1]:
            text.append(f"\n→ #{sequence}  ")
            text.append(json.dumps(value, ensure_ascii=False)[:200], style="dim")
        return text

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        values, error = parse_lines(event.value)
        if error is not None:
            self.app.notify(error, severity="error")
            return
        if values:
            self.post_message(self.Send(self.outbox, values))
        event.input.value = ""

    @on(SendInput.EndAsked)
    def _end(self, event: SendInput.EndAsked) -> None:
        event.stop()
        values, error = parse_lines(self.input.value)
        if error is not None:
            self.app.notify(error, severity="error")
            return
        self.input.value = ""
        self.post_message(self.Send(self.outbox, values, end=True))
