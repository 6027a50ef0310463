"""A leader: `o://leader` and its registry (`o://leader/registry`, static
`o://registry`) served by one node (PROTOCOL.md sections 8.1, 8.6).

TypeScript 0.9.0 runs its registry as a second libp2p node on a `/memory/`
transport inside the leader process; callers only ever reach it through the
leader as `o://registry` or `o://leader/registry`, so serving both addresses
from the leader's own node answers the same requests with one hop less.

What the leader adds to TypeScript's: a heartbeat (every `heartbeat` seconds
it pings each registered node; an entry not seen for `ttl` seconds, by a
commit or a ping answered, is dropped, and so is the child it was), entries
kept in SQLite when given a `registry_path` (they survive a restart and get a
fresh `ttl` to answer), and relays that pass on every chunk (routing.py).
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import trio

from .addresses import Address
from .errors import ErrorCode, OlaneError
from .limits import Limits
from .node import Node
from .registry import Registry, transports_of
from .routing import LEADER, dial_any
from .tools import Param, Request, Tool, tool_method

log = logging.getLogger("olane.leader")

REGISTRY = "o://leader/registry"
DEFAULT_TTL = 30.0
DEFAULT_HEARTBEAT = 10.0


def _peer_in(transports: Iterable[str]) -> str | None:
    for t in transports:
        if isinstance(t, str) and "/p2p/" in t:
            return t.rsplit("/p2p/", 1)[1].split("/")[0]
    return None


async def register_child(tool: Tool, request: Request) -> dict[str, Any]:
    """`child_register {address, transports?, peerId?}` on any parent (the leader, or a
    node of ours others nest under): ping the child back, then remember it."""
    node = tool.node
    params = request.params
    address = params.get("address")
    if not isinstance(address, str):
        raise OlaneError(ErrorCode.MISSING_PARAMETERS, "missing required parameter: address",
                         {"missing": ["address"], "method": "child_register"})
    address = Address.parse(address).value
    transports = [t for t in (params.get("transports") or []) if isinstance(t, str)]
    peer_id = params.get("peerId") or _peer_in(transports)
    if peer_id is None and request.caller_address == address:
        peer_id = request.peer_id
    targets = ([peer_id] if peer_id else []) + transports
    try:
        peer = await dial_any(node, targets)
        await node.use(address, "ping", {}, via=peer.to_string(), protocol=Address(address).protocol, timeout=5)
    except OlaneError as exc:
        raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"could not ping the child {address} back: {exc.message}",
                         {"address": address}) from None
    node.router.add_child(address, transports, peer.to_string())
    return {"message": f"Child node registered with parent! {address}", "parentTransports": node.transports()}


def stopping_notice(tool: Tool, request: Request) -> dict[str, Any]:
    """`notify`: a `node:stopping` child is dropped from the children (TypeScript keeps it)."""
    params = request.params
    if params.get("eventType") == "node:stopping":
        data = params.get("eventData") if isinstance(params.get("eventData"), dict) else {}
        address = data.get("address") or params.get("source")
        if isinstance(address, str):
            tool.node.router.drop_children(address=address)
    return {"success": True, "message": f"Notification {params.get('eventType')} emitted"}


class ParentMethods(Tool):
    """What a unit answers besides the built-ins: children may nest under it."""

    address = "o://parent-methods"

    @tool_method("A node nests under this one: it is pinged back, then routed to.", category="network",
                 params={"address": Param("the child's full address", type="string", required=True),
                         "transports": Param("the child's multiaddrs", type="array"),
                         "peerId": Param("the child's peer id", type="string")})
    async def _tool_child_register(self, request: Request) -> dict[str, Any]:
        return await register_child(self, request)

    @tool_method("Accepts a notification from another node (node:stopping drops the child).", category="builtin",
                 params={"eventType": Param("the event's type", type="string")})
    async def _tool_notify(self, request: Request) -> dict[str, Any]:
        return stopping_notice(self, request)


class LeaderTool(ParentMethods):
    address = LEADER
    description = "The network's leader: children register here; it routes calls by address."


class RegistryTool(Tool):
    address = REGISTRY
    description = "The registry of the network: who is where, with which transports and protocols."

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry

    @tool_method("Register a node: {peerId, address, protocols, transports, staticAddress}.", category="network",
                 params={"peerId": Param("the node's peer id", type="string", required=True),
                         "address": Param("the node's full address", type="string", required=True)})
    async def _tool_commit(self, request: Request) -> dict[str, Any]:
        params = {k: v for k, v in request.params.items() if not k.startswith("_")}
        try:
            self.registry.commit(params)
        except ValueError as exc:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, str(exc)) from None
        return {"success": True}

    @tool_method("Entries matching staticAddress, address or protocols (each entry once, newest first).",
                 category="network",
                 params={"staticAddress": Param("o://name", type="string"), "address": Param("o://a/b", type="string"),
                         "protocols": Param("protocols every entry must have", type="array")})
    async def _tool_search(self, request: Request) -> list[dict[str, Any]]:
        p = request.params
        protocols = p.get("protocols") if isinstance(p.get("protocols"), list) else None
        return self.registry.search(p.get("staticAddress"), p.get("address"), protocols)

    @tool_method("Every entry, in commit order.", category="network")
    async def _tool_find_all(self, request: Request) -> list[dict[str, Any]]:
        return self.registry.find_all()

    @tool_method("Drop a peer's entries; says so when there were none.", category="network",
                 params={"peerId": Param("the node's peer id", type="string", required=True)})
    async def _tool_remove(self, request: Request) -> dict[str, Any]:
        peer_id = str(request.params.get("peerId"))
        removed = self.registry.remove(peer_id)
        self.node.router.drop_children(peer_id=peer_id)
        if not removed:
            return {"success": False, "removed": 0, "message": f"no entry for peerId {peer_id}"}
        return {"success": True}

    @tool_method("The full address and transports of a parent by its address.", category="network",
                 params={"parentAddress": Param("o://name or o://leader/name", type="string", required=True)})
    async def _tool_find_available_parent(self, request: Request) -> dict[str, Any]:
        wanted = Address.parse(str(request.params.get("parentAddress"))).value
        found = self.registry.search(static_address=wanted, address=wanted)
        if not found:
            raise OlaneError(ErrorCode.NOT_FOUND, f"{wanted} node not found.", {"parentAddress": wanted})
        entry = found[0]
        return {"parentAddress": entry.get("address"), "parentTransports": entry.get("transports") or []}


class Leader:
    """`async with Leader(...) as leader:` runs a leader node (`leader.node`)."""

    def __init__(self, *, listen: Iterable[str] = ("/ip4/127.0.0.1/tcp/0",), seed: str | None = None,
                 registry_path: "str | Path | None" = None, ttl: float = DEFAULT_TTL,
                 heartbeat: float = DEFAULT_HEARTBEAT, limits: Limits | None = None,
                 extra_tools: Iterable[Tool] = ()) -> None:
        self.registry = Registry(registry_path)
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.node = Node([LeaderTool(), RegistryTool(self.registry), *extra_tools], seed=seed, listen=listen,
                         limits=limits)
        self.node.router.home = LEADER
        self.node.router.registry = self.registry

    @property
    def listen_addrs(self) -> list[str]:
        return self.node.listen_addrs

    @asynccontextmanager
    async def run(self) -> AsyncIterator["Leader"]:
        try:
            async with self.node:
                self._commit_self()
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._heartbeat_loop)
                        try:
                            yield self
                        finally:
                            nursery.cancel_scope.cancel()
                except BaseExceptionGroup as group:  # the caller's own exception, not wrapped by our nursery
                    raise group.exceptions[0] if len(group.exceptions) == 1 else group
        finally:
            self.registry.close()

    async def __aenter__(self) -> "Leader":
        self._cm = self.run()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cm.__aexit__(*exc)

    def _commit_self(self) -> None:
        """The registry's own entry, as TypeScript's registry commits itself."""
        node = self.node
        self.registry.remove(node.peer_id)
        self.registry.commit({
            "peerId": node.peer_id, "address": REGISTRY, "staticAddress": "o://registry",
            "protocols": ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", *node.router.protocols, "/o/reuse"],
            "transports": [{"value": t, "type": "libp2p"} for t in node.transports()],
        })

    def _is_self(self, entry: dict) -> bool:
        return entry.get("peerId") == self.node.peer_id

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            await self.check_once()

    async def check_once(self) -> None:
        """Ping every registered node once (concurrently, bounded); drop the expired."""
        limit = trio.Semaphore(32)
        timeout = max(1.0, min(5.0, self.ttl / 2))

        async def check(entry: dict) -> None:
            async with limit:
                targets = [entry["peerId"]] if entry.get("peerId") else []
                targets += transports_of(entry)
                with trio.move_on_after(timeout):
                    try:
                        peer = await dial_any(self.node, targets)
                        await self.node.use(entry["address"], "ping", {}, via=peer.to_string(),
                                            protocol=Address.parse(entry["address"]).protocol, timeout=timeout)
                    except (OlaneError, ValueError, KeyError):
                        return
                    self.registry.touch(entry["peerId"], entry["address"])

        async with trio.open_nursery() as nursery:
            for entry in self.registry.find_all():
                if not self._is_self(entry):
                    nursery.start_soon(check, entry)
        for entry in self.registry.expire(self.ttl, keep=self._is_self):
            log.info("registry: %s (%s) expired", entry.get("address"), entry.get("peerId"))
            if not self.registry.search(address=entry.get("address")):
                self.node.router.drop_children(address=entry.get("address"))
