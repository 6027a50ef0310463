"""A node joining a network (PROTOCOL.md sections 8.2, 8.3, 8.7, 8.8).

Addresses nest under the parent (the leader unless given): `o://demo` served
under `o://leader` becomes `o://leader/demo` (static `o://demo` still answers).

Several tools, one peer id: TypeScript's registry keys entries by peer id
(a second commit replaces the first) and its leader routes by the first path
segment to a child that did `child_register`. So a node registers one *unit*
per first segment of its tools' addresses: a tool alone at `o://demo` is its
own unit (`o://leader/demo`); tools sharing a first segment (`o://lab/demo`,
`o://lab/sqlite`, as `olane node --address o://lab` makes them) get a small
unit tool at `o://leader/lab` that answers `ping`, `child_register` and the
rest, and the leader's first-segment routing reaches the node, which resolves
the rest (`o://leader/lab/demo`) locally. Each unit does `child_register` and
`commit`; our registry keeps one entry per unit, a TypeScript one the last
(every unit stays reachable through its children routing by full address;
by static address alone, only the last one committed).

While joined, the node checks every `heartbeat` seconds that the registry still
lists it (a `search` through the leader) and registers again when not (a leader
restarted without its SQLite file, or that expired it while unreachable). On
stop it sends `notify node:stopping` to its parent and `remove` to the
registry, waiting at most `stop_timeout` seconds for each answer.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Iterable

import trio

from .addresses import REUSE_PROTOCOL, Address
from .errors import OlaneError
from .leader import ParentMethods
from .node import LEADER_PROTOCOL, Node
from .routing import LEADER
from .tools import Tool

log = logging.getLogger("olane.joining")

REGISTRY = "o://registry"


_PARENT_METHODS = ParentMethods().methods


class UnitTool(Tool):
    """The address several tools of one node nest under (`o://leader/lab`)."""

    description = "A node of the network: its tools nest under this address."


def nest(tools: Iterable[Tool], parent: str = LEADER) -> tuple[list[Tool], list[Address]]:
    """Put `tools` under `parent` (call before building the Node). Returns the
    tools to serve (with unit tools added where needed) and the unit addresses
    to register."""
    parent_address = Address.parse(parent)
    tools = list(tools)
    groups: dict[str, list[Tool]] = {}
    for tool in tools:
        groups.setdefault(tool.address.segments[0], []).append(tool)
    units: list[Address] = []
    out = list(tools)
    for first, members in groups.items():
        for tool in members:
            tool.address = Address(f"{parent_address.value}/{tool.address.value[4:]}")
        unit = parent_address.child(first)
        alone = [t for t in members if t.address == unit]
        if alone:
            holder = alone[0]
        else:
            holder = UnitTool(unit)
            out.append(holder)
        for name, spec in _PARENT_METHODS.items():  # a tool's own methods (its handshake too) win
            holder.methods.setdefault(name, spec)
        units.append(unit)
    return out, units


class Membership:
    """A running node's place in a network: registration, the watch, leaving."""

    def __init__(self, node: Node, leader: str, *, parent: str = LEADER, units: Iterable["Address | str"] = (),
                 heartbeat: float = 5.0, stop_timeout: float = 2.0, call_timeout: float = 10.0) -> None:
        self.node = node
        self.leader = leader
        self.parent = Address.parse(parent).value
        self.units = [Address.parse(u) for u in units] or [node.address]
        self.heartbeat = heartbeat
        self.stop_timeout = stop_timeout
        self.call_timeout = call_timeout
        self.registered = False
        self.registrations = 0  # how many times every unit was registered
        router = node.router
        router.upstream = leader
        if len(self.units) == 1:
            router.home = self.units[0].value

    async def _to_leader(self, address: str, method: str, params: dict, timeout: float | None = None) -> Any:
        return await self.node.use(address, method, params, via=self.leader, protocol=LEADER_PROTOCOL,
                                   timeout=timeout or self.call_timeout)

    def protocols(self) -> list[str]:
        return ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", *sorted(self.node.router.protocols), REUSE_PROTOCOL]

    async def register(self) -> None:
        """`child_register` with the parent, then `commit` to the registry, for each unit (8.3)."""
        node = self.node
        transports = node.transports()
        for unit in self.units:
            await self._to_leader(self.parent, "child_register",
                                  {"address": unit.value, "transports": transports, "peerId": node.peer_id})
            await self._to_leader(REGISTRY, "commit", {
                "peerId": node.peer_id, "address": unit.value, "protocols": self.protocols(),
                "transports": [{"value": t, "type": "libp2p"} for t in transports],
                "staticAddress": unit.static.value,
            })
        self.registered = True
        self.registrations += 1

    async def listed(self) -> bool:
        """Whether the registry lists every unit of this node now."""
        for unit in self.units:
            found = await self._to_leader(REGISTRY, "search", {"address": unit.value})
            if not any(isinstance(e, dict) and e.get("peerId") == self.node.peer_id for e in found or ()):
                return False
        return True

    async def watch(self) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            try:
                if not self.registered or not await self.listed():
                    log.info("not listed by the leader: registering again")
                    await self.register()
            except OlaneError as exc:
                self.registered = False
                log.info("leader unreachable (%s); will register again", exc.message)

    async def leave(self) -> None:
        """`notify node:stopping` to the parent and `remove` to the registry, each answer awaited briefly."""
        node = self.node
        with trio.CancelScope(shield=True):
            for unit in self.units:
                with trio.move_on_after(self.stop_timeout):
                    try:
                        await self._to_leader(self.parent, "notify", {
                            "eventType": "node:stopping",
                            "eventData": {"address": unit.value, "reason": "graceful_shutdown", "expectedDowntime": None},
                            "source": unit.value,
                        }, timeout=self.stop_timeout)
                    except OlaneError:
                        pass
            with trio.move_on_after(self.stop_timeout):
                try:
                    await self._to_leader(REGISTRY, "remove", {"peerId": node.peer_id}, timeout=self.stop_timeout)
                except OlaneError:
                    pass


@asynccontextmanager
async def joined(node: Node, leader: str, *, parent: str = LEADER, units: Iterable["Address | str"] = (),
                 heartbeat: float = 5.0, stop_timeout: float = 2.0) -> AsyncIterator[Membership]:
    """Inside `async with node:`: register, watch, and leave on the way out.
    A failed first registration is logged and retried by the watch."""
    membership = Membership(node, leader, parent=parent, units=units, heartbeat=heartbeat, stop_timeout=stop_timeout)
    try:
        await membership.register()
    except OlaneError as exc:
        log.warning("could not register with the leader at %s: %s", leader, exc.message)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(membership.watch)
            try:
                yield membership
            finally:
                nursery.cancel_scope.cancel()
                await membership.leave()
    except BaseExceptionGroup as group:  # the caller's own exception, not wrapped by our nursery
        raise group.exceptions[0] if len(group.exceptions) == 1 else group
