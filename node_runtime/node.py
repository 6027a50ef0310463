"""A node: one libp2p host that serves tools at olane addresses and calls other
nodes' tools. Every node is also a client (`use`, `use_streaming`), and answers
calls back over connections others opened (`/o/reuse`)."""
from __future__ import annotations

import gc
import logging
import secrets
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator, Iterable

import trio

from .addresses import REUSE_PROTOCOL, Address, olane_protocols
from .client import StreamingCall
from .codec import JSON, MSGPACK
from .limits import STOP_GRACE, Limits
from .metrics import NodeMetrics
from .peers import PeerPool
from .resuming import ResumableCall, SharedCall
from .routing import Router
from .server import StreamSession
from .stream_io import reset_quietly
from .streams import StreamRegistry
from .tools import Tool

LOCALHOST_ANY_PORT = "/ip4/127.0.0.1/tcp/0"
LEADER_PROTOCOL = "/o/leader"

log = logging.getLogger("olane.node")

_HEAP_FROZEN = False


def freeze_startup_heap() -> None:
    """Once per process, when the first node is up: move everything alive then
    (modules, py-libp2p, the host) out of the garbage collector's full passes.
    Those passes walk the whole heap; with it unfrozen, one took ~100 ms in the
    middle of 100 streams opening at once (on the client and the node alike). The
    console does the same for its own startup."""
    global _HEAP_FROZEN
    if not _HEAP_FROZEN:
        _HEAP_FROZEN = True
        gc.freeze()


class Node:
    """Serve `tools` (each at its own olane address) and call other nodes.

    Use as `async with Node([...]) as node:` inside trio. `listen` takes
    multiaddrs (default: 127.0.0.1 on a random port; `()` for a client that
    only dials). `codec="auto"` speaks msgpack to peers whose `identify` lists
    it and JSON to anyone else. `batch` (several chunks per frame, from peers
    whose `identify` lists `"frames": ["batch"]`): None = with `codec="auto"`
    only, True = also with a chosen codec (identify is asked then too), False = never.
    """

    def __init__(
        self,
        tools: "Tool | Iterable[Tool]" = (),
        *,
        seed: str | None = None,
        listen: Iterable[str] = (LOCALHOST_ANY_PORT,),
        limits: Limits | None = None,
        codec: str = "auto",
        address: "str | Address | None" = None,
        allow_remote_stop: bool = False,
        key: bytes | None = None,
        allow: Iterable[str] | None = None,
        batch: bool | None = None,
        compress: str | None = None,
        admins: Iterable[str] = (),
    ) -> None:
        if isinstance(tools, Tool):
            tools = [tools]
        self.tools: list[Tool] = list(tools)
        if not self.tools:  # a plain client still answers built-ins (ping, identify) on /o/reuse
            self.tools = [Tool(address or f"o://client-{secrets.token_hex(4)}")]
        self.address = self.tools[0].address
        self.seed = seed
        self.limits = limits or Limits()
        if codec not in ("auto", JSON, MSGPACK):
            raise ValueError("codec must be auto, json or msgpack")
        self.codec = codec
        self.batch = batch
        if compress not in (None, "zstd", False):
            raise ValueError("compress must be None, False or 'zstd'")
        #: serving: "zstd" compresses answers by default (streams, and large unary answers) for callers
        #: that accept it. Calling: None accepts compressed answers from peers that list zstd, "zstd"
        #: asks for them on every call, False never (docs/protocol-extensions.md)
        self.compress = compress
        self.allow_remote_stop = allow_remote_stop
        self.connection_id = str(uuid.uuid4())
        self.metrics = NodeMetrics(self.limits.max_active_requests, self.limits.max_requests_per_peer)
        self.router = Router(self.tools)
        self.router.node = self  # relaying (leaders, parents) dials through this node
        self.leader: str | None = None  # multiaddr of the leader calls by address go through (Client(leader=...))
        # `admins`: peer ids that may list and tap every stream here (each caller sees its own anyway)
        self.streams = StreamRegistry(self.limits.max_buffered_bytes, limits=self.limits, admins=admins,
                                      own_peer_id=lambda: self.peer_id)
        self.peers = PeerPool(seed=seed, key=key, listen=listen, limits=self.limits, allow=allow,
                              busy=lambda: self.streams.peers())
        for tool in self.tools:
            tool.node = self
        self._stop = trio.Event()
        self.stopping = False
        self._exit_stack: AsyncExitStack | None = None

    # -- lifecycle ----------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator["Node"]:
        handlers = {protocol: self._make_handler(protocol) for protocol in [*self.router.protocols, REUSE_PROTOCOL]}
        async with self.peers.run(handlers), trio.open_nursery() as nursery:
            freeze_startup_heap()
            self.streams.nursery = nursery  # resumable and shared streams run here, apart from their callers
            if self.limits.idle_stream_timeout > 0:
                nursery.start_soon(self.streams.retire_idle, self.limits.idle_stream_timeout)
            started: list[Tool] = []
            try:
                for tool in self.tools:
                    await tool.on_start()
                    started.append(tool)
                yield self
            finally:
                nursery.cancel_scope.cancel()
                self.streams.nursery = None
                # writes still in flight may wait on a peer that stopped reading: bound them
                self.stopping = True
                self.streams.stop_soon(STOP_GRACE)
                with trio.CancelScope(shield=True):
                    for tool in reversed(started):
                        try:
                            with trio.move_on_after(5):
                                await tool.on_stop()
                        except Exception:
                            pass

    async def __aenter__(self) -> "Node":
        self._exit_stack = AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            return await self._exit_stack.enter_async_context(self.run())
        except BaseException:
            await self._exit_stack.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            return await stack.__aexit__(*exc)

    async def serve_forever(self) -> None:
        """Wait until `request_stop()` (or the `stop` built-in, when allowed)."""
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def _make_handler(self, protocol: str):
        async def handle(stream) -> None:
            if not self.peers.is_allowed(self.peers.peer_of(stream) or ""):
                await reset_quietly(stream)  # a connection that predates the allowlist
                return
            try:
                await StreamSession(self, stream, protocol).serve()
            except Exception:  # never into py-libp2p's nursery, which would end the node
                log.exception("serving a stream failed")
                await reset_quietly(stream)

        return handle

    # -- what the node is ----------------------------------------------------------

    @property
    def host(self):
        """The py-libp2p host (None until the node runs)."""
        return self.peers.host

    @property
    def peer_id(self) -> str | None:
        return self.peers.peer_id

    @property
    def listen(self) -> list[str]:
        return self.peers.listen

    @property
    def listen_addrs(self) -> list[str]:
        """Multiaddrs with /p2p/<peer id> that others can dial."""
        return self.peers.listen_addrs

    def transports(self) -> list[str]:
        return self.listen_addrs

    # -- calling other nodes -------------------------------------------------------

    async def connect(self, target: str) -> str:
        """Dial a multiaddr with /p2p/<peer id>; return the peer id. Idempotent."""
        return await self.peers.connect(target)

    async def peer_protocols(self, target: str, wait: float = 5.0) -> list[str]:
        """The protocols a peer advertises through libp2p identify."""
        return await self.peers.peer_protocols(target, wait)

    async def tool_addresses(self, target: str) -> list[str]:
        """The olane addresses a peer serves, from libp2p identify (`/o/reuse` left out)."""
        return [Address.from_protocol(p).value for p in olane_protocols(await self.peer_protocols(target))]

    def use_streaming(
        self,
        address: "str | Address",
        method: str,
        params: dict[str, Any] | None = None,
        *,
        via: str | None = None,
        first_frame_timeout: float | None = None,
        idle_timeout: float | None = None,
        codec: str | None = None,
        protocol: str | None = None,
        timeout: float | None = None,
        compress: "str | bool | None" = None,
        resumable: bool = False,
        share: str | None = None,
        resume_within: float = 30.0,
    ) -> "StreamingCall | ResumableCall":
        """Call a method and iterate its chunks: `async for chunk in node.use_streaming(...)`.

        `via` is the multiaddr (or peer id, once connected) of the node serving
        `address`. An error frame raises OlaneError after the chunks before it.
        `protocol` overrides the libp2p protocol dialed (e.g. `/o/reuse` to call
        back a peer over the connection it opened). `timeout` is one deadline
        for the whole call; the other two bound waits for a frame (4017 each).
        `compress="zstd"` asks a peer that lists it for a compressed answer
        (False: never; None: the node's `compress`).
        `resumable=True` (a node of ours only): a `ResumableCall` that, when the
        connection drops, resumes the stream (reconnecting within `resume_within`
        s) so every chunk comes once; `.resumes` counts how often. `share=KEY`
        joins the stream of the same method and params with that key, if one
        runs (else starts it): every joiner gets every chunk from its join.
        """
        via, protocol = self._through_leader(via, protocol)
        if resumable:
            return ResumableCall(self, address, method, params, via=via, protocol=protocol, codec=codec,
                                 first_frame_timeout=first_frame_timeout, idle_timeout=idle_timeout,
                                 timeout=timeout, resume_within=resume_within)
        kind = StreamingCall if share is None else SharedCall
        call = kind(self, address, method, params, via=via, first_frame_timeout=first_frame_timeout,
                    idle_timeout=idle_timeout, codec=codec, protocol=protocol, timeout=timeout, compress=compress)
        call.share = share
        return call

    def open_bidirectional(
        self,
        address: "str | Address",
        method: str,
        params: dict[str, Any] | None = None,
        *,
        via: str | None = None,
        first_frame_timeout: float | None = None,
        idle_timeout: float | None = None,
        codec: str | None = None,
        protocol: str | None = None,
        timeout: float | None = None,
        compress: "str | bool | None" = None,
    ):
        """A call that sends input chunks while it reads the answer (bidirectional.py):
        `async with node.open_bidirectional(...) as call: await call.send(x); await call.end();
        async for chunk in call: ...`. Only toward peers whose identify lists "input" (else 4003)."""
        from .bidirectional import open_bidirectional

        via, protocol = self._through_leader(via, protocol)
        return open_bidirectional(self, address, method, params, via=via, first_frame_timeout=first_frame_timeout,
                                  idle_timeout=idle_timeout, codec=codec, protocol=protocol, timeout=timeout,
                                  compress=compress)

    async def use(
        self,
        address: "str | Address",
        method: str,
        params: dict[str, Any] | None = None,
        *,
        via: str | None = None,
        timeout: float | None = None,
        codec: str | None = None,
        protocol: str | None = None,
        compress: "str | bool | None" = None,
    ) -> Any:
        """Call a method; return the final frame's data (raises OlaneError on an error frame).
        `timeout` is one deadline for the whole call: dial, stream, answer (4017)."""
        via, protocol = self._through_leader(via, protocol)
        call = StreamingCall(self, address, method, params, via=via, first_frame_timeout=None,
                             idle_timeout=None, codec=codec, streaming=False, protocol=protocol, timeout=timeout,
                             compress=compress)
        return await call.result()

    def _through_leader(self, via: str | None, protocol: str | None) -> tuple[str | None, str | None]:
        """With a leader set and no `via`, a call by address goes to the leader (`/o/leader`), which routes it."""
        if via is None and self.leader is not None:
            return self.leader, protocol or LEADER_PROTOCOL
        return via, protocol


class Client(Node):
    """A node that serves no tools of its own and only dials: `async with Client() as client:`."""

    def __init__(self, *, limits: Limits | None = None, codec: str = "auto", address: str | None = None,
                 seed: str | None = None, key: bytes | None = None, leader: str | None = None,
                 batch: bool | None = None, compress: "str | bool | None" = None) -> None:
        super().__init__((), listen=(), limits=limits, codec=codec, address=address, seed=seed, key=key,
                         batch=batch, compress=compress)
        self.leader = leader  # calls without `via` go through this leader (multiaddr)
