"""The tree of nodes -> tool addresses -> methods (and a node's live streams,
from `list_streams`), rebuilt from the session's targets when they change. A tool whose node cannot list its methods (a plain
TypeScript node answers 4003 to `handshake`) gets a "type a method" entry."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Tree

from console.core.session import MethodInfo, Target, ToolInfo

STATE_MARK = {"connecting": ("◌", "yellow"), "connected": ("●", "green"), "unreachable": ("✖", "red")}


@dataclass
class MethodRef:
    target: Target
    address: str
    method: MethodInfo


@dataclass
class StreamRef:
    """A live stream of a node (an entry of its `list_streams`): Enter taps it."""

    target: Target
    stream: dict


class NodeTree(Tree):
    DEFAULT_CSS = """
    NodeTree { width: 100%; height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("nodes", **kwargs)
        self.show_root = False
        self.guide_depth = 3

    def rebuild(self, targets: list[Target]) -> None:
        """Redraw from the targets, keeping what was expanded and selected."""
        expanded = {self._key(n.data) for n in self._walk() if n.is_expanded and n.data is not None}
        selected = self._key(self.cursor_node.data) if self.cursor_node and self.cursor_node.data else None
        first_time = not self.root.children
        self.clear()
        cursor_line = None
        for target in targets:
            mark, colour = STATE_MARK.get(target.state, ("?", ""))
            label = Text.assemble((f"{mark} ", colour), (target.label, "bold"))
            if target.state == "connecting":
                label.append("  connecting…", style="dim")
            elif target.error:
                label.append(f"  {target.error}", style="red dim")
            node = self.root.add(label, data=target,
                                 expand=first_time or self._key(target) in expanded or target.embedded)
            for tool in target.tools:
                self._add_tool(node, target, tool, expanded)
            if target.streams:  # others' streams running there now (none: no entry)
                self._add_streams(node, target, expanded)
        for n in self._walk():
            if selected is not None and n.data is not None and self._key(n.data) == selected:
                cursor_line = n.line
        if cursor_line is not None and cursor_line >= 0:
            self.cursor_line = cursor_line

    def _add_tool(self, parent, target: Target, tool: ToolInfo, expanded: set) -> None:
        label = Text(tool.address, style="bold")
        if tool.listing_error:
            label.append("  (no method list)", style="dim")
        key = ("tool", target.multiaddr, tool.address)
        node = parent.add(label, data=(target, tool), expand=key in expanded or len(target.tools) <= 4)
        own = [m for m in tool.methods.values() if not m.builtin]
        builtins = [m for m in tool.methods.values() if m.builtin]
        for method in own:
            node.add_leaf(self._method_label(method), data=MethodRef(target, tool.address, method))
        if builtins:
            group = node.add(Text("built-ins", style="dim"), data=("builtins", target, tool),
                             expand=("builtins", target.multiaddr, tool.address) in expanded)
            for method in builtins:
                group.add_leaf(self._method_label(method), data=MethodRef(target, tool.address, method))
        node.add_leaf(Text("✎ type a method…", style="italic dim"),
                      data=MethodRef(target, tool.address, MethodInfo(name="", typed_by_hand=True)))

    def _add_streams(self, parent, target: Target, expanded: set) -> None:
        """The node's live streams (refreshed every few seconds by the session)."""
        streams = target.streams
        label = Text(f"live streams ({len(streams)})", style="bold")
        group = parent.add(label, data=("streams", target), expand=True)
        for entry in streams:
            group.add_leaf(self._stream_label(entry), data=StreamRef(target, entry))

    @staticmethod
    def _stream_label(entry: dict) -> Text:
        # the tree is narrow: method, chunks, rate first; the address and caller after
        text = Text("⇶ ", style="cyan")
        text.append(f"{entry.get('method')}", style="bold")
        text.append(f" {entry.get('chunks', 0):,} · {entry.get('chunksPerSecond', 0):,.0f}/s")
        if entry.get("taps"):
            text.append(f" · {entry['taps']} tap{'s' if entry['taps'] != 1 else ''}", style="dim")
        if entry.get("suspended"):
            text.append(" · suspended", style="yellow")
        elif entry.get("share"):
            text.append(f" · shared by {entry.get('readers', 0)}", style="dim")
        caller = str(entry.get("callerPeerId") or "")
        if caller:
            text.append(f" …{caller[-4:]}", style="dim")
        text.append(f" {entry.get('address', '')}", style="dim")
        return text

    @staticmethod
    def _method_label(method: MethodInfo) -> Text:
        text = Text(method.name)
        if method.streaming:
            text.append(" ⇶", style="cyan")
        if method.requires_approval:
            text.append(" !", style="bold red")
        return text

    def _walk(self):
        stack = list(self.root.children)
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children)

    @staticmethod
    def _key(data):
        if isinstance(data, Target):
            return ("target", data.multiaddr)
        if isinstance(data, MethodRef):
            return ("method", data.target.multiaddr, data.address, data.method.name, data.method.typed_by_hand)
        if isinstance(data, tuple) and data and data[0] == "builtins":
            return ("builtins", data[1].multiaddr, data[2].address)
        if isinstance(data, tuple) and data and data[0] == "streams":
            return ("streams", data[1].multiaddr)
        if isinstance(data, StreamRef):
            return ("stream", data.target.multiaddr, data.stream.get("streamId"))
        if isinstance(data, tuple) and len(data) == 2:
            return ("tool", data[0].multiaddr, data[1].address)
        return None

    def reveal(self, data) -> bool:
        """Move the cursor to the entry for `data` (a Target, a (target, tool) pair or a
        MethodRef), opening what it sits in; False when it is not in the tree."""
        key = self._key(data)
        for node in self._walk():
            if node.data is not None and self._key(node.data) == key:
                parent = node.parent
                while parent is not None and parent is not self.root:
                    parent.expand()
                    parent = parent.parent
                _ = self.last_line  # lays the lines out again, so the node has its line
                self.move_cursor(node)
                return True
        return False

    def selected_target(self) -> Target | None:
        node = self.cursor_node
        while node is not None:
            data = node.data
            if isinstance(data, Target):
                return data
            if isinstance(data, MethodRef):
                return data.target
            node = node.parent
        return None
