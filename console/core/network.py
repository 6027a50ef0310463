"""The console's picture of one network: a leader's registry entries (`find_all`)
turned into nodes nested as their addresses nest, each with its tools and a
state, and what changed between two polls. Plain Python (no trio, no Textual):
the session feeds it entries and ping outcomes, the tree reads it.

States: `checking` (listed, not asked yet), `reachable` (listed and answered
the console's last ping through the leader), `stale` (still listed, but did not
answer: killed, hung, or a TypeScript node that stopped without `remove`),
`gone` (no longer listed: removed or expired). A gone node stays in the picture
for `gone_keep` seconds, then disappears; one that is listed again comes back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from node_runtime.registry import transports_of

if TYPE_CHECKING:  # session.py imports this module
    from .session import ToolInfo

LEADER = "o://leader"
CHECKING, REACHABLE, STALE, GONE = "checking", "reachable", "stale", "gone"


def _under(address: str, ancestor: str) -> bool:
    return address.startswith(ancestor + "/")


@dataclass
class NetNode:
    """One registered node (one registry entry) as the console shows it."""

    address: str
    static_address: str = ""
    peer_id: str = ""
    transports: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    registered_at: Any = None
    state: str = CHECKING
    error: str | None = None
    gone_at: float | None = None
    checked_at: float | None = None
    parent: str = LEADER  # the registered node (or the leader) it nests under
    tools: list[ToolInfo] = field(default_factory=list)  # methods filled by the session
    listed: bool = False  # the session asked its tools for their methods

    def tool_addresses(self) -> list[str]:
        """Its tools: the `/o/...` protocols at or under its address (full addresses only;
        static ones and `/o/reuse` left out); the node's own address when none is."""
        found = []
        for p in self.protocols:
            if not isinstance(p, str) or not p.startswith("/o/"):
                continue
            address = "o://" + p[3:]
            if (address == self.address or _under(address, self.address)) and address not in found:
                found.append(address)
        return sorted(found) or [self.address]

    def tool(self, address: str) -> ToolInfo | None:
        return next((t for t in self.tools if t.address == address), None)


@dataclass
class Changes:
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # turned gone
    back: list[str] = field(default_factory=list)  # gone, then listed again
    updated: list[str] = field(default_factory=list)  # listed again with other transports or protocols
    removed: list[str] = field(default_factory=list)  # gone long enough: out of the picture

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.back or self.updated or self.removed)


class Network:
    """The nodes a leader's registry lists (the leader's own entries left out)."""

    def __init__(self, leader_peer_id: str | None = None, *, gone_keep: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.leader_peer_id = leader_peer_id
        self.gone_keep = gone_keep
        self.clock = clock
        self.nodes: dict[str, NetNode] = {}
        self.polled_at: float | None = None
        self.poll_error: str | None = None  # the last find_all failed (the leader itself is not answering)

    # -- what the registry says -------------------------------------------------------

    def update(self, entries: Iterable[Any]) -> Changes:
        """One `find_all` answer: who joined, who left, who came back."""
        now = self.clock()
        self.polled_at, self.poll_error = now, None
        listed: dict[str, dict] = {}
        for entry in entries or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
                continue
            if self.leader_peer_id and entry.get("peerId") == self.leader_peer_id:
                continue  # the registry's own entry: the leader's tools, not a node
            address = entry["address"]
            old = listed.get(address)
            if old is None or (entry.get("registeredAt") or 0) >= (old.get("registeredAt") or 0):
                listed[address] = entry
        changes = Changes()
        for address, entry in listed.items():
            node = self.nodes.get(address)
            fields = _fields(entry)
            if node is None:
                self.nodes[address] = NetNode(address, **fields)
                changes.joined.append(address)
                continue
            if node.state == GONE:
                node.state, node.gone_at, node.error, node.checked_at = CHECKING, None, None, None
                changes.back.append(address)
            if (node.peer_id, node.transports, node.protocols) != (fields["peer_id"], fields["transports"],
                                                                    fields["protocols"]):
                node.listed = False  # another process now: list its methods again
                if address not in changes.back:
                    changes.updated.append(address)
            for key, value in fields.items():
                setattr(node, key, value)
        for address, node in self.nodes.items():
            if address not in listed and node.state != GONE:
                node.state, node.gone_at = GONE, now
                node.error = "no longer in the registry"
                changes.left.append(address)
        changes.removed = self.prune(now)
        self._nest()
        return changes

    def failed_poll(self, message: str) -> None:
        self.poll_error = message

    def prune(self, now: float | None = None) -> list[str]:
        now = self.clock() if now is None else now
        out = [a for a, n in self.nodes.items() if n.state == GONE and n.gone_at is not None
               and now - n.gone_at >= self.gone_keep]
        for address in out:
            del self.nodes[address]
        if out:
            self._nest()
        return out

    def _nest(self) -> None:
        names = sorted(self.nodes, key=len, reverse=True)
        for node in self.nodes.values():
            node.parent = next((a for a in names if _under(node.address, a)), LEADER)

    # -- what the console saw ----------------------------------------------------------

    def mark(self, address: str, answered: bool, error: str | None = None) -> bool:
        """The outcome of a ping (or a method listing) through the leader; True when the state changed."""
        node = self.nodes.get(address)
        if node is None or node.state == GONE:
            return False
        node.checked_at = self.clock()
        before = (node.state, node.error)
        node.state, node.error = (REACHABLE, None) if answered else (STALE, error or "no answer")
        return (node.state, node.error) != before

    def due(self, every: float) -> list[NetNode]:
        """Listed nodes not checked for `every` seconds (never checked first)."""
        now = self.clock()
        out = [n for n in self.nodes.values()
               if n.state != GONE and (n.checked_at is None or now - n.checked_at >= every)]
        return sorted(out, key=lambda n: n.checked_at if n.checked_at is not None else float("-inf"))

    # -- reading -----------------------------------------------------------------------

    def children(self, address: str = LEADER) -> list[NetNode]:
        return sorted((n for n in self.nodes.values() if n.parent == address), key=lambda n: n.address)

    def node_of(self, address: str) -> NetNode | None:
        """The node serving `address` (the longest node address at or above it)."""
        best = None
        for node in self.nodes.values():
            if (address == node.address or _under(address, node.address)) and (
                    best is None or len(node.address) > len(best.address)):
                best = node
        return best

    def hops(self, address: str) -> list[str]:
        """The relays a call to `address` through the leader passes: the leader, then every
        registered node above the one serving it (parents relay to their children)."""
        node = self.node_of(address)
        path = [LEADER]
        if node is None:
            return path
        chain = []
        parent = node.parent
        while parent != LEADER and parent in self.nodes:
            chain.append(parent)
            parent = self.nodes[parent].parent
        return path + list(reversed(chain))

    def tool(self, address: str) -> ToolInfo | None:
        for node in self.nodes.values():
            found = node.tool(address)
            if found is not None:
                return found
        return None

    def counts(self) -> dict[str, int]:
        out = {CHECKING: 0, REACHABLE: 0, STALE: 0, GONE: 0}
        for node in self.nodes.values():
            out[node.state] = out.get(node.state, 0) + 1
        return out


def _fields(entry: dict) -> dict[str, Any]:
    transports = transports_of(entry)
    protocols = [p for p in entry.get("protocols") or () if isinstance(p, str)]
    return {"static_address": str(entry.get("staticAddress") or ""), "peer_id": str(entry.get("peerId") or ""),
            "transports": transports, "protocols": protocols, "registered_at": entry.get("registeredAt")}
