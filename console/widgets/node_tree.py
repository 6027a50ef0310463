"""The tree of nodes -> tool addresses -> methods, rebuilt from the session's
targets when they change. A tool whose node cannot list its methods (a plain
TypeScript node answers 4003 to `handshake`) gets a "type a method" entry.
A leader shows its own tools, then the nodes of its network nested as their
addresses nest, each with its state, tools and methods. A node's live streams
run by others (from `list_streams`) are listed under it; Enter taps one."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Tree

from console.core.network import NetNode
from console.core.session import MethodInfo, Target, ToolInfo

STATE_MARK = {"connecting": ("◌", "yellow"), "connected": ("●", "green"), "unreachable": ("✖", "red")}
NODE_MARK = {"checking": ("◌", "yellow"), "reachable": ("●", "green"), "stale": ("◐", "yellow"),
             "gone": ("✖", "red")}
OPEN_NETWORK_NODES = 8  # a network this small shows its nodes opened at first


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
    NodeTree { width: 100%; height: 1fr; overflow-x: hidden; }  /* a lone scrollbar thumb under long node errors read as a stray glyph; `e` lists them whole */
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("nodes", **kwargs)
        self.show_root = False
        self.guide_depth = 3
        self._seen: set = set()  # keys drawn before: a new network node opens only the first time

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
            network = target.network
            if network is not None:
                counts = network.counts()
                label.append(f"  {len(network.nodes)} node{'s' if len(network.nodes) != 1 else ''}", style="dim")
                for state in ("stale", "gone"):
                    if counts.get(state):
                        label.append(f" · {counts[state]} {state}", style="yellow" if state == "stale" else "red")
                if network.poll_error and target.state == "connected":
                    label.append(f"  registry: {network.poll_error}", style="red dim")
            node = self.root.add(label, data=target,
                                 expand=first_time or self._key(target) in expanded or target.embedded
                                 or (network is not None and self._key(target) not in self._seen))
            self._seen.add(self._key(target))
            for tool in target.tools:  # a leader's own tools start closed: its nodes matter more
                self._add_tool(node, target, tool, expanded, network is None and len(target.tools) <= 4)
            if network is not None:
                self._add_network_nodes(node, target, "o://leader", expanded)
            if target.streams:  # others' streams running there now (none: no entry)
                self._add_streams(node, target, expanded)
        for n in self._walk():
            if selected is not None and n.data is not None and self._key(n.data) == selected:
                cursor_line = n.line
        if cursor_line is not None and cursor_line >= 0:
            self.cursor_line = cursor_line

    def _add_network_nodes(self, parent, target: Target, under: str, expanded: set) -> None:
        network = target.network
        small = len(network.nodes) <= OPEN_NETWORK_NODES
        for net_node in network.children(under):
            key = ("netnode", target.multiaddr, net_node.address)
            mark, colour = NODE_MARK.get(net_node.state, ("?", ""))
            label = Text.assemble((f"{mark} ", colour), (net_node.address, "bold" if net_node.state != "gone" else "dim"))
            if net_node.state != "reachable":  # ● green says reachable; the others are spelled out
                label.append(f"  {net_node.state}", style=colour)
            peer = net_node.peer_id
            if peer:
                label.append(f"  …{peer[-4:]}", style="dim")
            if net_node.error and net_node.state != "reachable":
                label.append(f"  {net_node.error}", style="dim")
            opened = key in expanded or (key not in self._seen and small and net_node.state != "gone")
            self._seen.add(key)
            row = parent.add(label, data=("netnode", target, net_node), expand=opened)
            for tool in net_node.tools:
                if net_node.state != "gone":
                    self._add_tool(row, target, tool, expanded, len(net_node.tools) <= 4)
            self._add_network_nodes(row, target, net_node.address, expanded)

    def _add_tool(self, parent, target: Target, tool: ToolInfo, expanded: set, open_first: bool) -> None:
        label = Text(tool.address, style="bold")
        if tool.listing_error:
            label.append("  (no method list)", style="dim")
        key = ("tool", target.multiaddr, tool.address)
        # opened by default the first time only: a rebuild keeps what the operator closed
        opened = key in expanded if key in self._seen else open_first
        self._seen.add(key)
        node = parent.add(label, data=(target, tool), expand=opened)
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
        if method.takes_input:  # its tab has a send box (and it may stream back)
            text.append(" ⇄", style="cyan")
        elif method.streaming:
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
        if isinstance(data, tuple) and data and data[0] == "netnode":
            return ("netnode", data[1].multiaddr, data[2].address)
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

    def network_nodes(self) -> dict[str, NetNode]:
        """The network nodes drawn now, by address (for tests and the jump list)."""
        return {n.data[2].address: n.data[2] for n in self._walk()
                if isinstance(n.data, tuple) and n.data and n.data[0] == "netnode"}
