"""The console's recordings, comparisons, lasting history, saved calls and named
targets: actions mixed into OlaneConsole (kept here so app.py stays about the
layout and live calls). Everything persistent lives in console.core; this is
only the screen side."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual.app import SystemCommand
from textual.widgets import TabPane

from console.core import collections as C
from console.core.config import data_dir
from console.core.history import FILE_NAME as HISTORY_FILE
from console.core.history import History
from console.core.recording import RecordingError, from_stream_record, read_recording
from console.core.replay import Replayer
from console.core.session import MethodInfo, Target
from console.screens.collections import SavedCallsScreen
from console.screens.dialogs import PromptScreen
from console.screens.history import HistoryScreen
from console.screens.recordings import DiffScreen, Jump, OpenRecordingScreen, PickTabScreen, Side
from console.widgets.replay_pane import ReplayPane


def recordings_dir() -> Path:
    return data_dir() / "recordings"


def exports_dir() -> Path:
    return data_dir() / "exports"


class SessionActions:
    """Mixed into OlaneConsole (which provides session, settings, views, call_tabs, start_call ...)."""

    def _setup_sessions(self, open_files: Iterable[str] = ()) -> None:
        self.replays: dict[str, ReplayPane] = {}
        self.open_files = [str(f) for f in open_files]
        self._replay_counter = 0
        session = self.session
        if session.history is None:
            session.history = History(data_dir() / HISTORY_FILE)
        if self.settings.record_calls and session.record_dir is None:
            session.record_dir = recordings_dir()
            session.record_cap_bytes = self.settings.record_cap_mb * 1_000_000
        session.names.update({t.multiaddr: t.name for t in self.settings.targets if t.name})

    def _open_startup_recordings(self) -> None:
        for path in self.open_files:
            self.open_recording(path)

    def _tick_replays(self) -> None:
        for pane in list(self.replays.values()):
            pane.tick()

    # -- recordings ----------------------------------------------------------------------

    def open_recording(self, path: str | Path) -> str | None:
        """Open a recording as a tab that replays it; returns the tab's id."""
        try:
            recording = read_recording(path)
        except RecordingError as exc:
            self.notify(str(exc), title="not opened", severity="error", timeout=8)
            return None
        self._replay_counter += 1
        pane_id = f"replay-{self._replay_counter}"
        replayer = Replayer(recording, max_chunks=self.session.max_chunks)
        pane = ReplayPane(replayer)
        pane.on_new_view = partial(self._replay_view_changed, pane_id)
        self.replays[pane_id] = pane
        self.views[pane_id] = pane.view
        tabs = self.call_tabs
        tabs.display = True
        self.no_calls.display = False
        tabs.add_pane(TabPane(replayer.record.title, pane, id=pane_id))
        tabs.active = pane_id
        self._update_subtitle()
        self.call_after_refresh(self._focus_log, pane_id)
        return pane_id

    def _focus_log(self, pane_id: str) -> None:
        view = self.views.get(pane_id)
        if view is not None and view.log is not None:
            view.log.focus()

    def _replay_view_changed(self, pane_id: str, view) -> None:
        self.views[pane_id] = view
        self._tab_states.pop(pane_id, None)

    def action_open_recording(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.open_recording(path)

        self.push_screen(OpenRecordingScreen([recordings_dir(), exports_dir()]), chosen)

    def action_toggle_record_all(self) -> None:
        s = self.settings
        s.record_calls = not s.record_calls
        self._save_settings()
        self.session.record_dir = recordings_dir() if s.record_calls else None
        self.session.record_cap_bytes = s.record_cap_mb * 1_000_000
        if s.record_calls:
            self.notify(f"every call is kept in {recordings_dir()} (newest {s.record_cap_mb} MB)",
                        title="recording every call")
        else:
            self.notify("calls are no longer recorded", title="recording off")

    # -- compare two tabs -------------------------------------------------------------------

    def _side(self, pane_id: str) -> Side:
        pane = self.replays.get(pane_id)
        if pane is not None:  # the whole recording, not only what the replay has shown so far
            rec = pane.replayer.recording
            return Side(pane_id, pane.replayer.record.title, rec)
        record = self.views[pane_id].record
        state = "" if record.state.ended else " (running: as of now)"
        return Side(pane_id, f"{record.title}{state}", from_stream_record(record))

    def action_compare(self) -> None:
        current = self.call_tabs.active
        others = [pid for pid in self.views if pid != current]
        if not current or current not in self.views or not others:
            self.notify("open two calls or recordings first: compare shows the tab you are on against another",
                        severity="warning")
            return
        if len(others) == 1:
            self.compare_tabs(current, others[0])
            return
        choices = [(pid, self._side_label(pid)) for pid in others]
        self.push_screen(PickTabScreen(f"Compare {self._side_label(current)} with…", choices),
                         lambda other: self.compare_tabs(current, other) if other else None)

    def _side_label(self, pane_id: str) -> str:
        pane = self.replays.get(pane_id)
        return pane.replayer.record.title if pane else self.views[pane_id].record.title

    def compare_tabs(self, a: str, b: str, **kwargs) -> None:
        self.push_screen(DiffScreen(self._side(a), self._side(b), **kwargs), self._jump_to_difference)

    def _jump_to_difference(self, jump: Jump | None) -> None:
        if jump is None or jump.pane_id not in self.views:
            return
        pane = self.replays.get(jump.pane_id)
        if pane is not None:
            r = pane.replayer
            frame = r.recording.frames[jump.position]
            if jump.position >= r.record.count:
                r.pause()
                r.seek(frame.t)
                pane.tick()
            index = jump.position
        else:
            record = self.views[jump.pane_id].record
            index = self._side(jump.pane_id).recording.frames[jump.position].recv - 1
            if record.chunk(index) is None:
                self.notify("that chunk is no longer held", severity="warning")
                return
        self.call_tabs.active = jump.pane_id

        def go() -> None:
            log = self.views[jump.pane_id].log
            if log is not None:
                log.focus()
                log.cursor = index
                log.action_cursor(0)

        self.call_after_refresh(go)

    # -- history ---------------------------------------------------------------------------

    def action_history(self) -> None:
        history = self.session.history
        entries = history.load() if history is not None else []
        self.push_screen(HistoryScreen(entries), self._history_chosen)

    def _history_chosen(self, result) -> None:
        if result is None:
            return
        what, entry = result
        if what == "open":
            self.open_recording(entry.recording)
            return
        target = self._target_for(entry.target)
        if target is None and entry.embedded:  # an embedded node of an earlier run: this run's one
            target = self._target_for(None)
            if target is not None and target.tool(entry.address) is not None:
                self.notify("made on an earlier run's embedded node: using this run's", title="history")
            else:
                target = None
        if target is None:
            self.notify(f"{entry.name or entry.target} is not in the list of nodes (add it with a)", severity="error")
            return
        if what == "load":
            self.load_into_form(target, entry.address, entry.method, entry.params, entry.streaming)
        else:
            self.start_call(target, entry.address, self._method_info(target, entry.address, entry.method,
                                                                     entry.streaming),
                            dict(entry.params), streaming=entry.streaming)

    def _target_for(self, multiaddr: str | None) -> Target | None:
        targets = self.session.targets
        if multiaddr is None:  # "this node": the embedded one, else the only one
            return next((t for t in targets if t.embedded), targets[0] if len(targets) == 1 else None)
        found = next((t for t in targets if t.multiaddr == multiaddr), None)
        if found is None:  # the embedded node's port changes each run: match by peer id
            peer = multiaddr.rsplit("/p2p/", 1)[-1]
            found = next((t for t in targets if t.multiaddr.endswith("/p2p/" + peer)), None)
        return found

    @staticmethod
    def _method_info(target: Target, address: str, method: str, streaming: bool) -> MethodInfo:
        tool = target.tool(address)
        info = tool.methods.get(method) if tool is not None else None
        return info or MethodInfo(method, streaming=streaming, typed_by_hand=True)

    def load_into_form(self, target: Target, address: str, method: str, params: dict[str, Any],
                       streaming: bool = True) -> None:
        """Show the method with these parameters in the form, to edit before running."""
        info = self._method_info(target, address, method, streaming)

        async def show() -> None:
            await self.method_panel.show(target, address, info, values=dict(params))
            fields = [w for w in self.method_panel.query("Input, Select, Switch, TextArea") if w.display]
            (fields[0] if fields else self.method_panel).focus()

        self.call_later(show)
        self.notify(f"{address} {method} loaded into the form: edit, then F5", title="loaded")

    # -- saved calls -------------------------------------------------------------------------

    def _call_to_save(self) -> tuple[Target, str, MethodInfo, dict[str, Any], bool] | None:
        panel = self.method_panel
        in_form = self.focused is not None and panel in self.focused.ancestors_with_self
        record = self.current_record
        if record is not None and not in_form and record.replay_of is None:
            target = self._target_for(record.target)
            if target is not None:
                return (target, record.address, self._method_info(target, record.address, record.method,
                                                                  record.streaming), dict(record.params),
                        record.streaming)
        if panel.method is not None and panel.target is not None:
            params, problem = panel.values()
            if problem:
                self.notify(problem, title="fix the form first", severity="error")
                return None
            return panel.target, panel.address, panel.method, params or {}, panel.method.streaming
        return None

    def action_save_call(self) -> None:
        found = self._call_to_save()
        if found is None:
            self.notify("pick a method (or open a call's tab) to save", severity="warning")
            return
        target, address, method, params, streaming = found
        defaults = {p["name"]: p.get("defaultValue") for p in method.parameters if "defaultValue" in p}
        params = {k: v for k, v in params.items() if not (k in defaults and defaults[k] == v)}
        target_ref = None if target.embedded else (target.name or target.multiaddr)

        def named(name: str | None) -> None:
            if not name:
                return
            try:
                call = C.SavedCall(C.check_name(name), method.name, target_ref, address, params, streaming)
                path = C.save(call)
            except (C.CollectionError, OSError) as exc:
                self.notify(str(exc), title="not saved", severity="error")
                return
            self.notify(f"{path}  (olane run {call.name})", title="saved")

        self.push_screen(PromptScreen(
            "Save this call", f"{address} {method.name} {params or ''}\nName it (a group/ prefix makes a folder), "
                              "e.g. demo/items-300:", method.name), named)

    def action_saved_calls(self) -> None:
        calls, problems = C.load_all()
        self.push_screen(SavedCallsScreen(calls, problems, str(C.collections_dir())), self._saved_chosen)

    def _saved_chosen(self, result) -> None:
        if result is None:
            return
        what, call = result
        if what == "delete":
            C.delete(call.name)
            self.notify(f"{call.name} deleted", title="saved calls")
            return
        self.run_saved(call, load_only=what == "load")

    def run_saved(self, call: C.SavedCall, load_only: bool = False) -> None:
        multiaddr = None
        if call.target:
            multiaddr, _ = self.settings.resolve_target(call.target)
        target = self._target_for(multiaddr)
        if target is None:
            self.notify(f"{call.target} is not in the list of nodes: add it first (a)", severity="error")
            return
        address = call.address or (target.tools[0].address if len(target.tools) == 1 else None)
        if address is None:
            self.notify(f"{call.name} names no o:// address and {target.label} serves several tools",
                        severity="error")
            return
        if load_only:
            self.load_into_form(target, address, call.method, call.params, call.stream)
            return
        method = self._method_info(target, address, call.method, call.stream)
        self.start_call(target, address, method, dict(call.params), streaming=call.stream)

    def saved_call_commands(self) -> Iterable[SystemCommand]:
        calls, _ = C.load_all()
        for call in calls:
            yield SystemCommand(f"Run saved call {call.name}", f"{call.address or ''} {call.method} {call.params}",
                                partial(self.run_saved, call))

    # -- named targets -------------------------------------------------------------------------

    def action_name_target(self) -> None:
        target = self.node_tree.selected_target()
        if target is None:
            self.notify("pick a node in the tree first", severity="warning")
            return
        if target.embedded:
            self.notify("the embedded node changes address each run; name the nodes you add", severity="warning")
            return

        def named(name: str | None) -> None:
            if name is None:
                return
            self.name_target(target, name or None)

        self.push_screen(PromptScreen("Name this node", f"{target.multiaddr}\nshown instead of its peer id; "
                                      "`olane call NAME ...` and `olane run --target NAME` use it",
                                      target.name or ""), named)

    def name_target(self, target: Target, name: str | None) -> None:
        target.name = name
        if name:
            self.session.names[target.multiaddr] = name
        else:
            self.session.names.pop(target.multiaddr, None)
        saved = next((t for t in self.settings.targets if t.multiaddr == target.multiaddr), None)
        if saved is None:
            self.settings.remember_target(target.multiaddr, target.address, name)
        else:
            self.settings.remember_target(saved.multiaddr, saved.address, name)
            saved.name = name
        self._save_settings()
        self.node_tree.rebuild(self.session.targets)
