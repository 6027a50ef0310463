"""Where a request goes: to a tool this node serves, or onward.

A request arrives on a libp2p protocol (`/o/<address>`, or `/o/reuse` on a
connection the other side opened) and, when it is a `route` envelope, names
its final target in `params.address` (PROTOCOL.md section 5). `Router.local`
finds the tool that answers it here; `Router.forward` is where a node that
leads or parents others relays a request for an address it does not serve
(section 8.4) and passes every frame of the answer back. This node has no one
to forward to, so it answers 4002.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from .addresses import Address
from .errors import ErrorCode, OlaneError
from .messages import IncomingRequest
from .tools import Tool

#: `reply(message)`: send one answer frame (a JSON-RPC message dict) to the caller
Reply = Callable[[dict[str, Any]], Awaitable[None]]


class Router:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools = list(tools)
        self._by_address: dict[str, Tool] = {}
        self._by_protocol: dict[str, Tool] = {}
        for tool in self.tools:
            for key in {tool.address.value, tool.address.static.value}:
                if key in self._by_address and self._by_address[key] is not tool:
                    raise ValueError(f"two tools answer to {key}")
                self._by_address[key] = tool
                self._by_protocol[Address(key).protocol] = tool

    @property
    def protocols(self) -> list[str]:
        """The `/o/...` protocols the tools answer on (full and static addresses)."""
        return list(self._by_protocol)

    def local(self, req: IncomingRequest, protocol: str) -> Tool | None:
        """The tool here that answers `req`, or None when its envelope names an
        address no tool here answers to."""
        if req.envelope and req.address:
            return self._by_address.get(req.address)
        return self._by_protocol.get(protocol) or self.tools[0]

    async def forward(self, req: IncomingRequest, reply: Reply) -> None:
        """Relay `req` toward its address and `reply` every frame of the answer.
        Raises OlaneError when it cannot (the caller then gets an error frame)."""
        raise OlaneError(ErrorCode.NOT_FOUND, "Address not found", {"address": req.address})
