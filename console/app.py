"""The olane console: a Textual app over a ConsoleSession.

Network work runs in trio, in guest mode on Textual's asyncio loop (one thread;
see console/core/trio_bridge.py). Chunks land in each call's StreamRecord on
the trio side; a 30 Hz timer redraws only the visible call pane from its
record, so no widget is touched per chunk.
"""
from __future__ import annotations

import asyncio
import gc
import os
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import orjson
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Static, TabbedContent, TabPane, Tabs, Tree

from console.core.collector import Collector
from console.core.config import Settings, config_path, data_dir
from console.core.session import ConsoleSession, MethodInfo, Target, cli_command, olane_program, project_folder
from console.core.stream_store import DEFAULT_MAX_CHUNKS, State, StreamRecord
from console.core.trio_bridge import TrioBridge
from console.screens.dialogs import AddTargetScreen, ConfirmScreen, PromptScreen, QuitScreen
from console.screens.help import HelpScreen
from console.screens.jump import JumpScreen, Place
from console.screens.lists import ErrorsScreen
from console.session_actions import SessionActions
from console.widgets.call_view import STATE_GLYPHS, CallView
from console.widgets.key_bar import KeyBar
from console.widgets.method_panel import MethodPanel
from console.widgets.node_tree import MethodRef, NodeTree, StreamRef
from console.widgets.send_box import SendBox
from themes import DEFAULT_THEME, STREAM_DEFAULTS, THEMES

REFRESH_HZ = 30
# the footer keeps the first of these when it is narrow (binding ids; the rest after them)
FOOTER_PRIORITY = ("run", "cancel", "jump", "help", "quit", "close-tab", "next-tab", "follow", "order-by",
                   "filter", "copy-cli", "focus-tree", "add-node", "raw-json", "export", "history", "errors",
                   "remove-node", "rediscover", "theme")


@dataclass
class SessionChanged(Message):
    kind: str
    what: Any = None


class OlaneConsole(SessionActions, App):
    CSS_PATH = "console.tcss"
    TITLE = "olane console"
    COMMAND_PALETTE_BINDING = "ctrl+p"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("f5,ctrl+r", "run_method", "Run", id="run"),
        Binding("escape", "focus_tree", "Tree", id="focus-tree"),
        Binding("x", "cancel_call", "Cancel", id="cancel"),
        Binding("g,colon", "jump", "Jump to", id="jump"),
        Binding("a", "add_target", "Add node", id="add-node"),
        Binding("delete", "remove_target", "Remove", id="remove-node"),
        Binding("r", "rediscover", "Refresh", id="rediscover"),
        Binding("f2", "toggle_raw", "Raw JSON", id="raw-json"),
        Binding("end,f", "follow", "Follow", id="follow"),
        Binding("o", "order_by", "Order by", id="order-by"),
        Binding("slash", "filter_chunks", "Filter", id="filter"),
        Binding("v", "cycle_view", "View", id="view"),
        Binding("p", "pick_paths", "Paths", id="paths"),
        Binding("z", "maximize_pane", "Maximize", id="maximize"),
        Binding("s", "export", "Export", id="export"),
        Binding("y", "copy_cli", "Copy CLI", id="copy-cli"),
        Binding("ctrl+w", "close_tab", "Close", id="close-tab"),
        Binding("right_square_bracket,ctrl+pagedown", "next_tab", "Next tab", id="next-tab"),
        Binding("left_square_bracket,ctrl+pageup", "previous_tab", "Previous tab", id="previous-tab", show=False),
        # ahead of a scrolled pane's own ctrl+pageup/down (page left/right): a tree taller than its
        # pane gets a scrollbar, and with it a horizontal overflow that would take these keys
        Binding("ctrl+pagedown", "next_tab", "Next tab", show=False, priority=True),
        Binding("ctrl+pageup", "previous_tab", "Previous tab", show=False, priority=True),
        Binding("h", "history", "History", id="history"),
        Binding("ctrl+o", "open_recording", "Open recording", id="open-recording", show=False),
        Binding("d", "compare", "Compare tabs", id="compare", show=False),
        Binding("ctrl+s", "save_call", "Save call", id="save-call", show=False),
        Binding("c", "saved_calls", "Saved calls", id="saved-calls", show=False),
        Binding("n", "name_target", "Name node", id="name-node", show=False),
        Binding("R", "toggle_record_all", "Record every call", id="record-all", show=False),
        Binding("e", "errors", "Errors", id="errors"),
        Binding("t", "toggle_theme", "Theme", id="theme"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(
        self,
        targets: Iterable[str | tuple[str, str | None]] = (),
        *,
        embedded: bool = True,
        session: ConsoleSession | None = None,
        settings_path: Path | None = None,
        refresh_hz: float = REFRESH_HZ,
        run: tuple[str, str, dict[str, Any]] | None = None,
        open_files: Iterable[str] = (),
    ) -> None:
        """`run`: (address, method, params) of a call to start as soon as a node serving
        that address is listed (`olane console --run`)."""
        super().__init__()
        self.pending_run = run
        self.session = session or ConsoleSession(embedded=embedded)
        self.settings_path = settings_path
        self.settings = Settings.load(settings_path)
        wanted = [(t, None) if isinstance(t, str) else t for t in targets]
        saved = [(t.multiaddr, t.address) for t in self.settings.targets]
        self.initial_targets = wanted + [t for t in saved if t not in wanted]
        self.refresh_hz = refresh_hz
        self.collector = Collector()
        self._form_next = False  # the next method highlighted gets the focus in its form (jump-to)
        self._taken = 0  # chunks in the open tabs' records at the last refresh (busy or idle)
        self.bridge = TrioBridge()
        self.views: dict[str, CallView] = {}  # pane id -> view
        self._tab_states: dict[str, State] = {}
        self._setup_sessions(open_files)  # history, recordings, named targets (console/session_actions.py)
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = self.settings.theme if self.settings.theme in self.available_themes else DEFAULT_THEME

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(STREAM_DEFAULTS)  # so any theme (not only ours) can draw the chunk log

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield NodeTree(id="tree")
            with Vertical(id="right"):
                yield MethodPanel(id="method")
                yield Static("No calls yet. Pick a method, press F5: each call opens a tab here.",
                             id="no-calls")
                yield TabbedContent(id="calls")
        yield KeyBar({name: rank for rank, name in enumerate(FOOTER_PRIORITY)}, id="keys")

    async def on_mount(self) -> None:
        # held, not queried: App.query_one searches the active screen, which may be a dialog
        self.node_tree = self.query_one(NodeTree)
        self.method_panel = self.query_one(MethodPanel)
        self.call_tabs = self.query_one(TabbedContent)
        self.no_calls = self.query_one("#no-calls")
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self.session.listeners.append(self._session_changed)
        self.call_tabs.display = False
        self.node_tree.rebuild(self.session.targets)
        await self.bridge.start()  # the one place the trio guest run starts
        # what exists now (modules, libp2p, widgets) lives as long as the app: keep it out
        # of full collections, which otherwise stall the screen 100+ ms under a firehose
        gc.freeze()
        self.collector.install()  # full passes at idle moments, not mid-stream (core/collector.py)
        self.bridge.submit(self.session.run, self.initial_targets)
        self.set_interval(1 / self.refresh_hz, self._refresh_visible)
        self.node_tree.focus()
        self._update_subtitle()
        self._open_startup_recordings()

    async def on_unmount(self) -> None:
        if self.bridge.running:  # calls first, while the nodes still read their resets
            try:
                await asyncio.wait_for(self.bridge.call(self.session.stop_calls), 2)
            except Exception:
                pass
        await self.bridge.stop()  # a guest run left behind breaks later trio runs in this thread
        self.collector.uninstall()

    # -- session -> screen ---------------------------------------------------------------

    def _session_changed(self, kind: str, what: Any) -> None:
        self.post_message(SessionChanged(kind, what))

    @on(SessionChanged)
    async def _on_session_changed(self, event: SessionChanged) -> None:
        if event.kind in ("streams", "targets", "target"):  # (streams: every few seconds per node)
            self.node_tree.rebuild(self.session.targets)
        if event.kind in ("targets", "target"):
            method_panel = self.method_panel
            if (method_panel.target is None and isinstance(event.what, Target) and event.what.embedded
                    and self.pending_run is None):
                self._show_first_method(event.what)
            if self.pending_run is not None:
                await self._start_pending_run()
        elif event.kind == "error" and event.what is not None:
            e = event.what
            self.notify(f"{e.code} {e.name}: {e.message}", title=e.where, severity="error", timeout=6)
        self._update_subtitle()

    async def _start_pending_run(self) -> None:
        """Start the --run call on the first connected node serving its address (once);
        say so when every node is listed and none serves it."""
        address, name, params = self.pending_run
        targets = self.session.targets
        target = next((t for t in targets if t.state == "connected" and t.tool(address)), None)
        if target is None:
            if targets and all(t.state != "connecting" for t in targets):
                self.pending_run = None
                self.notify(f"no node here serves {address}: {name} was not run", title="--run",
                            severity="error", timeout=10)
            return
        self.pending_run = None
        method = target.tool(address).methods.get(name) or MethodInfo(name, typed_by_hand=True)
        if not method.typed_by_hand:  # the form shows what runs, so y and F5 repeat it
            await self.method_panel.show(target, address, method, params)
            self.node_tree.reveal(MethodRef(target, address, method))
        self.start_call(target, address, method, dict(params))

    def _show_first_method(self, target: Target) -> None:
        tree = self.node_tree
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and isinstance(node.data, MethodRef) and not node.data.method.typed_by_hand:
                tree.cursor_line = line
                return

    def _update_subtitle(self) -> None:
        s = self.session
        running = sum(1 for r in s.calls if not r.state.ended)
        connected = sum(1 for t in s.targets if t.state == "connected")
        self.sub_title = (f"{connected}/{len(s.targets)} nodes · {running} running · "
                          f"{len(s.calls)} calls · {len(s.errors)} errors")

    def _refresh_visible(self) -> None:
        """The fixed-rate redraw: the visible pane from its record, tab labels on state changes."""
        if not self.call_tabs.is_attached:
            return  # shutting down
        self._tick_replays()
        for pane_id, view in self.views.items():
            state = view.record.effective_state()
            if self._tab_states.get(pane_id) is not state:
                self._tab_states[pane_id] = state
                self._label_tab(pane_id, view.record, state)
                self._update_subtitle()
                self.refresh_bindings()
        view = self.current_view
        if view is not None:
            view.sync()
        taken = sum(v.record.count for v in self.views.values())
        sorting = any(v.views.table is not None and v.views.table.model.sorting is not None
                      for v in self.views.values())
        self.collector.tick(busy=taken != self._taken or sorting)
        self._taken = taken

    def _label_tab(self, pane_id: str, record: StreamRecord, state: State) -> None:
        try:
            self.call_tabs.get_tab(pane_id).label = self._tab_label(record, state)
        except Exception:
            pass

    def _tab_label(self, record: StreamRecord, state: State) -> str:
        """State, method, call number and which node: `▶ stream_items #3 · embedded`,
        `✔ stream_items #4 · demo0` for a call a leader routed to o://leader/demo0."""
        target = next((t for t in self.session.targets if t.multiaddr == record.target), None)
        if record.route:  # through a leader: the node it reaches tells tabs apart (all share the leader)
            node = record.address.rsplit("/", 1)[-1]
        else:
            node = target.nickname if target is not None else record.target.rsplit("/", 1)[-1][-4:]
        return f"{STATE_GLYPHS[state]} {record.title} · {node}"

    def _show_active_tab(self) -> None:
        """Scroll the tab bar so the active tab is in view (once the bar is laid out)."""
        def scroll() -> None:
            tabs = self.call_tabs
            try:
                bar = tabs.query_one(Tabs)
                tab = bar.active_tab
                if tab is not None:
                    bar.query_one("#tabs-scroll").scroll_to_center(tab, force=True, animate=False)
            except Exception:
                pass

        self.call_after_refresh(scroll)

    @property
    def current_view(self) -> CallView | None:
        tabs = self.call_tabs
        return self.views.get(tabs.active) if tabs.active else None

    @property
    def current_record(self) -> StreamRecord | None:
        view = self.current_view
        return view.record if view is not None else None

    # -- tree and method panel -------------------------------------------------------------

    @on(Tree.NodeHighlighted)
    async def _method_highlighted(self, event: Tree.NodeHighlighted) -> None:
        data = event.node.data
        if isinstance(data, MethodRef):
            panel = self.method_panel
            if (panel.target, panel.address, panel.method) != (data.target, data.address, data.method):
                await panel.show(data.target, data.address, data.method)
            if self._form_next:  # jumped to this method: straight into its form, as Enter does
                self._form_next = False
                self._focus_form()

    @on(Tree.NodeSelected)
    def _method_selected(self, event: Tree.NodeSelected) -> None:
        if isinstance(event.node.data, StreamRef):
            self.start_tap(event.node.data.target, event.node.data.stream)
            return
        if isinstance(event.node.data, MethodRef):
            self._focus_form()

    def _focus_form(self) -> None:
        panel = self.method_panel
        fields = [w for w in panel.query("Input, Select, Switch, TextArea") if w.display]
        (fields[0] if fields else panel.query_one("#run")).focus()

    @on(MethodPanel.RunRequested)
    def _run_requested(self, event: MethodPanel.RunRequested) -> None:
        if event.method.requires_approval:
            body = (f"{event.address} {event.method.name} is marked {event.method.risk} risk.\n"
                    f"parameters: {orjson.dumps(event.params).decode()}")
            self.push_screen(ConfirmScreen("Run a risky method?", body),
                             partial(self._confirmed, event.target, event.address, event.method, event.params))
        else:
            self.start_call(event.target, event.address, event.method, event.params)

    def _confirmed(self, target, address, method, params, yes: bool | None) -> None:
        if yes:
            self.start_call(target, address, method, params)

    def start_call(self, target: Target, address: str, method: MethodInfo, params: dict[str, Any],
                   streaming: bool | None = None) -> StreamRecord:
        """Open a tab for the call and start it on the trio side."""
        streaming = method.streaming or method.typed_by_hand if streaming is None else streaming
        record = self.session.new_call(target, address, method.name, params, streaming, method.takes_input)
        # sent at once: opening the stream takes round trips that overlap the tab's layout
        # (sending after the tab's first paint measured worse: the request then meets the
        # paints that follow it)
        self.bridge.submit(self.session.run_call, record)
        self._open_tab(record)
        return record

    def start_tap(self, target: Target, stream: dict[str, Any]) -> StreamRecord:
        """Open a tab tapping one of the node's live streams (marked TAP)."""
        record = self.session.new_tap(target, stream)
        self.bridge.submit(self.session.run_call, record)
        self._open_tab(record)
        return record

    def _open_tab(self, record: StreamRecord) -> None:
        """A tab for the record, made the active one once it exists."""
        pane_id = f"call-{record.number}"
        view = CallView(record, settings=self.settings, save=self._save_settings)
        self.views[pane_id] = view
        tabs = self.call_tabs
        tabs.display = True
        self.no_calls.display = False
        added = tabs.add_pane(TabPane(self._tab_label(record, record.state), view, id=pane_id))
        self._update_subtitle()

        async def activate() -> None:  # the newest tab is the active one, once it exists
            await added
            if pane_id not in self.views:  # closed already
                return
            tabs.active = pane_id
            self._show_active_tab()
            if record.streaming:  # keys now act on the stream: x cancels, arrows walk the chunks
                self.call_after_refresh(lambda: view.views.focus_target.focus() if view.views.focus_target else None)

        self.call_next(activate)

    # -- actions -------------------------------------------------------------------------

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        # Textual's default folder (~/Downloads) is often missing on servers; ours always exists
        folder = Path(path) if path else data_dir() / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return super().deliver_screenshot(filename, str(folder), time_format)

    # which keys apply now: the footer shows those (the palette lists every action)
    _CALL_ACTIONS = {"follow", "order_by", "filter_chunks", "export", "copy_cli", "close_tab", "cycle_view", "compare"}
    _NODE_ACTIONS = {"remove_target", "rediscover", "name_target"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted or not hasattr(self, "call_tabs"):
            return True
        if action == "cancel_call":
            record = self.current_record
            return record is not None and not record.state.ended and record.replay_of is None
        if action in ("follow", "order_by", "filter_chunks"):  # a unary answer has no chunks to act on
            view = self.current_view
            return view is not None and view.record.streaming
        if action in self._CALL_ACTIONS:
            return self.current_view is not None
        if action in ("next_tab", "previous_tab"):  # with one tab: to it, from the tree or the form
            return len(self.views) > 1 or (len(self.views) == 1 and self.current_view is not None
                                           and self.current_view not in (self.focused.ancestors_with_self
                                                                         if self.focused is not None else ()))
        if action == "pick_paths":
            view = self.current_view
            return view is not None and view.views.name in ("fields", "chart")
        if action in self._NODE_ACTIONS:
            return self.focused is self.node_tree
        if action == "toggle_raw":
            method = self.method_panel.method
            in_form = self.focused is not None and self.method_panel in self.focused.ancestors_with_self
            return in_form and method is not None and not method.typed_by_hand
        if action == "focus_tree":
            return self.focused is not self.node_tree
        return True

    @on(SendBox.Send)
    def _send_input(self, event: SendBox.Send) -> None:
        """A bidirectional tab's send box: queue the values, wake the call's pump on the trio side."""
        outbox = event.outbox
        taken = outbox.put(event.values)
        if taken < len(event.values):
            self.notify(f"send box full: {len(event.values) - taken} value(s) not sent", severity="warning")
        if event.end:
            outbox.ask_end()
        record = next((v.record for v in self.views.values() if v.record.outbox is outbox), None)
        if record is not None:
            self.bridge.submit(self._wake_on_trio_side, record)

    async def _wake_on_trio_side(self, record: StreamRecord) -> None:
        self.session.wake_input(record)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        if not self.screen_stack:  # a tab closed while the app shuts down
            return
        self.refresh_bindings()
        self._show_active_tab()

    def action_focus_tree(self) -> None:
        self.node_tree.focus()

    def action_run_method(self) -> None:
        self.method_panel.request_run()

    async def action_toggle_raw(self) -> None:
        await self.method_panel.toggle_raw()

    def action_cancel_call(self) -> None:
        record = self.current_record
        if record is None or record.state.ended:
            self.notify("no running call in this tab", severity="warning")
            return
        self.bridge.submit(self._cancel_on_trio_side, record)

    async def _cancel_on_trio_side(self, record: StreamRecord) -> None:
        self.session.cancel_call(record)

    async def action_close_tab(self) -> None:
        tabs = self.call_tabs
        pane_id = tabs.active
        if not pane_id:
            return
        view = self.views.pop(pane_id, None)
        self.replays.pop(pane_id, None)
        if view is not None and not view.record.state.ended and view.record.replay_of is None:
            self.bridge.submit(self._cancel_on_trio_side, view.record)
        self._tab_states.pop(pane_id, None)
        await tabs.remove_pane(pane_id)
        if view is not None:  # after the pane is gone: nothing draws the record any more
            self.session.forget_call(view.record)
        self._update_subtitle()
        if not self.views:
            tabs.display = False
            self.no_calls.display = True

    def action_next_tab(self, step: int = 1) -> None:
        """The next call tab (wrapping); its tab is scrolled into view."""
        panes = list(self.views)
        if not panes:
            return
        tabs = self.call_tabs
        at = panes.index(tabs.active) if tabs.active in panes else 0
        tabs.active = panes[(at + step) % len(panes)]
        view = self.views[tabs.active]
        # the keys act on the call in view from now on (with one tab, ] is how to reach it)
        target = view.views.focus_target or view.log
        if target is not None:
            self.call_after_refresh(target.focus)

    def action_previous_tab(self) -> None:
        self.action_next_tab(-1)
    def action_cycle_view(self) -> None:
        view = self.current_view
        if view is not None:
            name = view.cycle_view()
            self.notify(f"{name} view (remembered for {view.record.method})", timeout=2)
            self.refresh_bindings()

    def action_pick_paths(self) -> None:
        from console.screens.paths import PathsScreen

        view = self.current_view
        if view is None or view.views.name not in ("fields", "chart"):
            self.notify("switch to the fields or chart view first (v)", severity="warning")
            return
        views = view.views
        chart = views.name == "chart"
        suggested = views.suggested_chart() if chart else views.suggested_fields()
        if chart:
            from console.core.views.paths import numeric_paths

            suggested = list(dict.fromkeys(suggested + numeric_paths(views.first_data())))

        def chosen(paths: list[str] | None) -> None:
            if paths is not None:
                views.set_paths(paths)
                view.invalidate()

        self.push_screen(PathsScreen("Chart these numeric paths" if chart else "Show these paths as columns",
                                     suggested, views.current_paths()), chosen)

    def action_maximize_pane(self) -> None:
        """Fill the screen with the focused pane (the call tabs, the tree, the form); again restores."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
            return
        focused = self.focused
        if focused is None:
            return
        view = self.current_view
        if view is not None and view in focused.ancestors_with_self:
            screen.maximize(self.call_tabs, container=False)
        elif not screen.maximize(focused):
            self.notify("this pane cannot be maximized", severity="warning")

    def action_follow(self) -> None:
        view = self.current_view
        if view is not None and view.log is not None:
            view.log.action_follow()

    def action_order_by(self) -> None:
        record = self.current_record
        if record is None or not record.streaming:
            self.notify("open a stream first", severity="warning")
            return

        def chosen(path: str | None) -> None:
            if path is not None:
                record.set_sequence_path(path or None)
                self.notify(f"ordering judged by {path or '_sequence'}")

        self.push_screen(PromptScreen(
            "Order by a JSON path",
            "Judge gaps and reordering by this path in each chunk (e.g. id, data.index); empty = _sequence.",
            record.sequence_path or ""), chosen)

    def action_filter_chunks(self) -> None:
        view = self.current_view
        if view is None or view.log is None:
            self.notify("open a stream first", severity="warning")
            return
        log = view.log

        def chosen(text: str | None) -> None:
            if text is not None:
                log.set_filter(text or None)
                view.invalidate()

        self.push_screen(PromptScreen(
            "Filter chunks", "Show only chunks whose JSON contains this text (any case); empty shows all.",
            log.filter_text or ""), chosen)

    def action_export(self) -> None:
        record = self.current_record
        if record is None:
            self.notify("no call to export", severity="warning")
            return
        path = self.session.save_recording(record, data_dir() / "exports")
        note = f" (the oldest {record.dropped:,} were no longer held)" if record.dropped else ""
        self.notify(f"{record.held:,} chunks written to {path}{note}", title="exported")

    def action_copy_cli(self) -> None:
        record = self.current_record
        if record is None:
            method = self.method_panel
            if method.method is None:
                self.notify("no call to copy", severity="warning")
                return
            params, _ = method.values()
            record = StreamRecord(title="", target=method.target.multiaddr, address=method.address,
                                  method=method.method.name, params=params or {},
                                  streaming=method.method.streaming)
        command = cli_command(record, olane_program())
        self.copy_to_clipboard(command)  # OSC 52: terminals that allow it (tmux only passes it on if told)
        where = ["clipboard (OSC 52)"]
        if os.environ.get("TMUX") and _tmux_buffer(command):
            where.append("tmux buffer")
        path = data_dir() / "copied-command.txt"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(command + "\n")
            where.append(str(path))
        except OSError as exc:
            self.notify(f"could not write {path}: {exc}", severity="warning")
        project = project_folder()
        run_from = f"\nrun it from {project}" if project is not None else ""
        self.notify(f"{command}{run_from}\ncopied to: {', '.join(where)}", title="copied", timeout=10)

    def jump_places(self) -> list[Place]:
        """Every node, tool and method the tree lists, for the jump-to list."""
        places: list[Place] = []
        for target in self.session.targets:
            places.append(Place(f"{target.label}  {target.multiaddr}", "node", target))
        for target in self.session.targets:
            for tool in target.all_tools():
                places.append(Place(f"{tool.address}  on {target.nickname}", "tool", (target, tool)))
                for method in tool.methods.values():
                    places.append(Place(f"{tool.address} {method.name}  on {target.nickname}", "method",
                                        MethodRef(target, tool.address, method)))
        return places

    def action_jump(self) -> None:
        def chosen(place: Place | None) -> None:
            if place is None:
                return
            tree = self.node_tree
            panel = self.method_panel
            already = place.kind == "method" and (panel.target, panel.address, panel.method) == (
                place.data.target, place.data.address, place.data.method)
            if tree.reveal(place.data):
                tree.focus()
                if place.kind == "method":  # its form, once the panel shows it
                    if already:
                        self._focus_form()
                    else:
                        self._form_next = True
            else:
                self.notify("no longer in the tree", severity="warning")

        self.push_screen(JumpScreen(self.jump_places), chosen)

    def action_add_target(self) -> None:
        def added(result: tuple[str, str | None, str | None] | None) -> None:
            if result is None:
                return
            multiaddr, address, name = result
            self.settings.remember_target(multiaddr, address, name)
            self._save_settings()
            self.bridge.submit(self.session.add_target, multiaddr, address, name)

        self.push_screen(AddTargetScreen(), added)

    def action_remove_target(self) -> None:
        target = self.node_tree.selected_target()
        if target is None:
            return
        if target.embedded:
            self.notify("the embedded node stays while the console runs", severity="warning")
            return
        self.session.remove_target(target)
        self.settings.forget_target(target.multiaddr)
        self._save_settings()

    def action_rediscover(self) -> None:
        target = self.node_tree.selected_target()
        if target is not None:
            self.bridge.submit(self.session.refresh, target)

    def action_errors(self) -> None:
        self.push_screen(ErrorsScreen(self.session.errors))

    def action_toggle_theme(self) -> None:
        self.theme = "olane-light" if self.theme == "olane-dark" else "olane-dark"

    def _remember_theme(self, theme) -> None:
        if self.settings.theme != theme.name:
            self.settings.theme = theme.name
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings.save(self.settings_path)
        except OSError as exc:
            self.notify(f"could not save settings: {exc}", severity="error")

    def action_quit(self) -> None:
        """Quit; with calls running, ask once first (q again or y quits) unless the
        settings say not to."""
        running = sum(1 for r in self.session.calls if not r.state.ended)
        if not running or not self.settings.confirm_quit or isinstance(self.screen, QuitScreen):
            self.exit()
            return

        def answered(answer: str | None) -> None:
            if answer == "always":
                self.settings.confirm_quit = False
                self._save_settings()
            if answer:
                self.exit()

        self.push_screen(QuitScreen(running, str(self.settings_path or config_path())), answered)

    def action_help(self) -> None:
        keys = [(b.key.replace("question_mark", "?"), b.description) for b in self.BINDINGS]
        keys += [("ctrl+p", "Command palette"), ("↑ ↓ Enter (in a stream)", "move over chunks, show one whole"),
                 ("Tab", "next pane")]
        self.push_screen(HelpScreen(keys))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if b.action != "quit":
                yield SystemCommand(b.description, f"{b.description} ({b.key})",
                                    partial(self.run_action, b.action))
        yield from self.saved_call_commands()


def _tmux_buffer(text: str) -> bool:
    """Inside tmux: put `text` in its paste buffer (prefix ]), and with -w on the outer
    terminal's clipboard where tmux may set it. False when tmux refused."""
    try:
        done = subprocess.run(["tmux", "load-buffer", "-w", "-"], input=text.encode(), timeout=2,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def build_console(multiaddrs: list[str], embedded: bool = True, seed: str | None = None,
                  max_chunks: int = DEFAULT_MAX_CHUNKS,
                  run: tuple[str, str, dict[str, Any]] | None = None, caller_seed: str | None = None,
                  caller_key: bytes | None = None, open_files: Iterable[str] = ()) -> OlaneConsole:
    """The console `olane console` opens (not started). `seed`: the embedded node's
    identity; `caller_seed` / `caller_key`: the identity the nodes the console calls see."""
    session = ConsoleSession(embedded=embedded, seed=seed, max_chunks=max_chunks,
                             caller_seed=caller_seed, caller_key=caller_key)
    return OlaneConsole(multiaddrs, session=session, run=run, open_files=open_files)


def run_console(multiaddrs: list[str], embedded: bool = True, seed: str | None = None,
                max_chunks: int = DEFAULT_MAX_CHUNKS, run: tuple[str, str, dict[str, Any]] | None = None,
                caller_seed: str | None = None, caller_key: bytes | None = None, open_files: Iterable[str] = ()) -> int:
    build_console(multiaddrs, embedded=embedded, seed=seed, max_chunks=max_chunks, run=run,
                  caller_seed=caller_seed, caller_key=caller_key, open_files=open_files).run()
    return 0
