"""The selected method: what it does, whether it streams, its risk, and a
parameter form built from its metadata (string, number, boolean, choice, JSON)
with defaults filled in and inline validation, or the same parameters as raw
JSON. The raw-JSON toggle never traps: invalid JSON is reported, and a second
toggle returns to the form without it."""
from __future__ import annotations

import json
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from console.core import params as P
from console.core.session import MethodInfo, Target

RISK_STYLE = {"low": "$success", "medium": "$warning", "high": "b $error"}


class MethodPanel(Vertical):
    DEFAULT_CSS = """
    MethodPanel { height: auto; max-height: 50%; border-bottom: solid $panel; }
    MethodPanel .method-title { padding: 0 1; height: 1; }
    MethodPanel .method-description { padding: 0 1; color: $text-muted; height: auto; max-height: 4; }
    MethodPanel .method-form { height: auto; max-height: 16; padding: 0 1; }
    MethodPanel .field-row, MethodPanel .field { height: auto; }
    MethodPanel .field-row { margin-bottom: 1; }
    MethodPanel .field-label { width: 22; padding: 0 1 0 0; text-align: right; }
    MethodPanel .field Input, MethodPanel .field Select { width: 1fr; }
    MethodPanel .field Switch { width: auto; }
    MethodPanel .field-error { color: $error; padding: 0 0 0 23; height: auto; }
    MethodPanel .field-error.-empty { display: none; }
    MethodPanel .method-raw { height: 8; margin: 0 1; }
    MethodPanel .method-buttons { height: auto; padding: 0 1; margin-top: 1; }
    MethodPanel .method-buttons Button { margin-right: 1; min-width: 12; }
    MethodPanel .method-buttons .hint { padding: 0 1; color: $text-muted; }
    MethodPanel.-empty .method-buttons, MethodPanel.-empty .method-form { display: none; }
    """

    class RunRequested(Message):
        """The operator asked to run the method with these parameters."""

        def __init__(self, target: Target, address: str, method: MethodInfo, params: dict[str, Any]) -> None:
            super().__init__()
            self.target = target
            self.address = address
            self.method = method
            self.params = params

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target: Target | None = None
        self.address: str | None = None
        self.method: MethodInfo | None = None
        self.raw_mode = False
        self._raw_rejected = False
        self._fields: dict[str, dict[str, Any]] = {}
        self._generation = 0  # widget ids stay unique across rebuilds

    def compose(self) -> ComposeResult:
        yield Static("Select a method in the tree (Enter), or add a node with [b]a[/b].", classes="method-title")
        yield Static("", classes="method-description")
        # no focus stop of its own: it showed none, so what was typed after Tab went nowhere
        # (a focused field is scrolled into view anyway)
        yield VerticalScroll(classes="method-form", can_focus=False)
        with Horizontal(classes="method-buttons"):
            yield Button("Run ▶", id="run", variant="primary", compact=True)
            yield Button("Raw JSON", id="raw", compact=True)
            yield Label("F5 runs · F2 raw JSON", classes="hint")

    def on_mount(self) -> None:
        self.add_class("-empty")

    # -- showing a method --------------------------------------------------------------

    async def show(self, target: Target, address: str, method: MethodInfo, values: dict[str, Any] | None = None) -> None:
        self.target, self.address, self.method = target, address, method
        self.raw_mode = False
        self._raw_rejected = False
        self.remove_class("-empty")
        risk_style = RISK_STYLE.get(method.risk, "")
        title = (f"[b]{escape(address)}[/b] [b $accent]{escape(method.name or '(type a method)')}[/]"
                 + (f" [dim]routed by[/] {escape(target.label)}" if target.routes(address)
                    else f" [dim]on[/] {escape(target.label)}")
                 + ("  [$secondary]⇶ streams[/]" if method.streaming else "  [$secondary]⇥ answers once[/]")
                 + ("  [$secondary]⇄ takes input[/]" if method.takes_input else "")
                 + f"  [{risk_style}]risk {escape(method.risk)}[/]"
                 + ("  [$error]asks before running[/]" if method.requires_approval else ""))
        self.query_one(".method-title", Static).update(title)
        self.query_one(".method-description", Static).update(escape(method.description or "(no description)"))
        await self._build_form(values)

    async def _build_form(self, values: dict[str, Any] | None = None) -> None:
        self._generation += 1
        gen = self._generation
        form = self.query_one(".method-form", VerticalScroll)
        await form.remove_children()
        self._fields = {}
        method = self.method
        widgets = []
        if method.typed_by_hand:
            widgets.append(self._row("method", "method *", Input(placeholder="method name, e.g. ping", compact=True,
                                                                   id=f"f{gen}-method-name", value=method.name)))
        if self.raw_mode or method.typed_by_hand:
            area = TextArea(json.dumps(values or {}, indent=2), classes="method-raw", id=f"f{gen}-raw")
            widgets.append(area)
        else:
            if not method.parameters:
                widgets.append(Static("no parameters", classes="field-error"))
            for param in method.parameters:
                widgets.append(self._field(param, gen, values))
        await form.mount_all(widgets)
        for button in self.query("#raw").results(Button):  # not there yet when shown while starting up
            button.label = "Form" if self.raw_mode else "Raw JSON"
            button.display = not method.typed_by_hand

    def _field(self, param: dict[str, Any], gen: int, values: dict[str, Any] | None) -> Vertical:
        name = param["name"]
        kind = P.field_kind(param)
        given = (values or {}).get(name, param.get("defaultValue"))
        wid = f"f{gen}-{_safe(name)}"
        if kind == P.BOOLEAN:
            widget = Switch(value=bool(given), id=wid, compact=True)
        elif kind == P.CHOICE:
            choices = [(P.text_for(param, o) if not isinstance(o, str) else o, o) for o in P.options(param)]
            widget = Select(choices, value=given if given in P.options(param) else Select.NULL,
                            allow_blank=not param.get("required"), id=wid, compact=True)
        else:
            widget = Input(value=P.text_for(param, given), placeholder=P.placeholder(param), id=wid,
                           type="number" if kind == P.NUMBER else "text", compact=True)
        widget.tooltip = param.get("description") or None
        self._fields[name] = {"param": param, "widget": widget}
        label = name + (" *" if param.get("required") else "")
        return self._row(name, label, widget)

    def _row(self, name: str, label: str, widget) -> Vertical:
        error = Static("", classes="field-error -empty", id=f"{widget.id}-error")
        return Vertical(Horizontal(Label(label, classes="field-label"), widget, classes="field"), error,
                        classes="field-row")

    # -- reading the form ----------------------------------------------------------------

    def entries(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, f in self._fields.items():
            w = f["widget"]
            if isinstance(w, Select):
                out[name] = None if w.value is Select.NULL else w.value
            else:
                out[name] = w.value
        return out

    def values(self) -> tuple[dict[str, Any] | None, str | None]:
        """(params, None) when valid, else (None, what is wrong); marks bad fields."""
        if self.method is None:
            return None, "no method selected"
        if self.raw_mode or self.method.typed_by_hand:
            try:
                value = json.loads(self.query_one(".method-raw", TextArea).text or "{}")
            except ValueError as exc:
                return None, f"parameters are not valid JSON: {exc}"
            if not isinstance(value, dict):
                return None, "parameters must be a JSON object"
            return value, None
        values, errors = P.collect(self.method.parameters, self.entries())
        for name, f in self._fields.items():
            self._show_error(f["widget"], errors.get(name))
        if errors:
            return None, "; ".join(f"{k}: {v}" for k, v in errors.items())
        return values, None

    def typed_method_name(self) -> str:
        try:
            return self.query_one(f"#f{self._generation}-method-name", Input).value.strip()
        except Exception:
            return self.method.name if self.method else ""

    def _show_error(self, widget, message: str | None) -> None:
        try:
            error = self.query_one(f"#{widget.id}-error", Static)
        except Exception:
            return
        error.update(message or "")
        error.set_class(not message, "-empty")

    @on(Input.Changed)
    def _validate_field(self, event: Input.Changed) -> None:
        for f in self._fields.values():
            if f["widget"] is event.input:
                try:
                    P.parse(f["param"], event.value)
                    self._show_error(event.input, None)
                except ValueError as exc:
                    self._show_error(event.input, str(exc))

    # -- actions -------------------------------------------------------------------------

    async def toggle_raw(self) -> None:
        if self.method is None or self.method.typed_by_hand:
            return
        if not self.raw_mode:
            values, _ = P.collect(self.method.parameters, self.entries())
            self.raw_mode = True
            await self._build_form(values)
            self._focus_first_field()
            return
        values, problem = self.values()
        if problem and not self._raw_rejected:
            self._raw_rejected = True
            self.app.notify(f"{problem}. Press F2 again to go back to the form without these edits.",
                            severity="warning")
            return
        self.raw_mode = False
        self._raw_rejected = False
        await self._build_form(values if not problem else None)
        self._focus_first_field()

    def _focus_first_field(self) -> None:
        """The focused field went with the old form: its first field now (F2 again works
        from there; typing goes to the JSON or the form as shown)."""
        fields = [w for w in self.query("Input, Select, Switch, TextArea") if w.display]
        (fields[0] if fields else self.query_one("#run", Button)).focus()

    def request_run(self) -> None:
        if self.method is None or self.target is None:
            self.app.notify("select a method first", severity="warning")
            return
        params, problem = self.values()
        if problem:
            self.app.notify(problem, title="cannot run", severity="error")
            return
        method = self.method
        if method.typed_by_hand:
            name = self.typed_method_name()
            if not name:
                self.app.notify("type a method name", severity="error")
                return
            method = MethodInfo(name=name, streaming=True, typed_by_hand=True)
        self.post_message(self.RunRequested(self.target, self.address, method, params))

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.request_run()

    @on(Button.Pressed, "#raw")
    async def _raw_pressed(self) -> None:
        await self.toggle_raw()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.request_run()


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
