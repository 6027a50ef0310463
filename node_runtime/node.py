"""A node: one libp2p host that serves tools at olane addresses and calls other
nodes' tools. Every node is also a client (`use`, `use_streaming`), and answers
calls back over connections others opened (`/o/reuse`)."""
from __future__ import annotations

import secrets
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator, Iterable

import trio

from .addresses import REUSE_PROTOCOL, Address, olane_protocols
from .client import StreamingCall
from .codec import JSON, MSGPACK
from .errors import ErrorCode, OlaneError
from .host import key_pair_from_seed, new_olane_host, parse_peer_multiaddr
from .limits import STOP_GRACE, Limits
from .messages import IncomingRequest
from .metrics import NodeMetrics
from .server import StreamSession
from .tools import Tool

LOCALHOST_ANY_PORT = "/ip4/127.0.0.1/tcp/0"


class Node:
    """Serve `tools` (each at its own olane address) and call other nodes.

    Use as `async with Node([...]) as node:` inside trio. `listen` takes
    multiaddrs (default: 127.0.0.1 on a random port; `()` for a client that
    only dials). `codec="auto"` speaks msgpack to peers whose `identify` lists
    it and JSON to anyone else.
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
    ) -> None:
        if isinstance(tools, Tool):
            tools = [tools]
        self.tools: list[Tool] = list(tools)
        if not self.tools:  # a plain client still answers built-ins (ping, identify) on /o/reuse
            self.tools = [Tool(address or f"o://client-{secrets.token_hex(4)}")]
        self.address = self.tools[0].address
        self.seed = seed
        self.listen = [str(a) for a in listen]
        self.limits = limits or Limits()
        if codec not in ("auto", JSON, MSGPACK):
            raise ValueError("codec must be auto, json or msgpack")
        self.codec = codec
        self.allow_remote_stop = allow_remote_stop
        self.connection_id = str(uuid.uuid4())
        self.metrics = NodeMetrics(self.limits.max_active_requests)
        self.host = None
        self.peer_id: str | None = None
        self._by_address: dict[str, Tool] = {}
        self._by_protocol: dict[str, Tool] = {}
        for tool in self.tools:
            tool.node = self
            for key in {tool.address.value, tool.address.static.value}:
                if key in self._by_address and self._by_address[key] is not tool:
                    raise ValueError(f"two tools answer to {key}")
                self._by_address[key] = tool
                self._by_protocol[Address(key).protocol] = tool
        self._peers: dict[str, Any] = {}  # multiaddr or peer id text -> libp2p peer ID
        self._codecs: dict[tuple[str, str], str] = {}
        self._slots: dict[str, int] = {}
        self._stop = trio.Event()
        self._sessions: set = set()  # streams being served (server.StreamSession)
        self.stopping = False
        self._exit_stack: AsyncExitStack | None = None

    # -- lifecycle ----------------------------------------------------------------

    @asynccontextmanager
    async def run(self) -> AsyncIterator["Node"]:
        import multiaddr
        from libp2p.custom_types import TProtocol

        key_pair = await trio.to_thread.run_sync(key_pair_from_seed, self.seed)
        self.host = new_olane_host(key_pair, self.limits.dial_timeout)
        self.peer_id = self.host.get_id().to_string()
        listen = [multiaddr.Multiaddr(a) for a in self.listen]
        async with self.host.run(listen_addrs=listen):
            for protocol in [*self._by_protocol, REUSE_PROTOCOL]:
                self.host.set_stream_handler(TProtocol(protocol), self._make_handler(protocol))
            started: list[Tool] = []
            try:
                for tool in self.tools:
                    await tool.on_start()
                    started.append(tool)
                yield self
            finally:
                # writes still in flight may wait on a peer that stopped reading: bound them
                self.stopping = True
                for session in list(self._sessions):
                    session.writer.stop_soon(STOP_GRACE)
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
            await StreamSession(self, stream, protocol).serve()

        return handle

    # -- what the node is ----------------------------------------------------------

    @property
    def listen_addrs(self) -> list[str]:
        """Multiaddrs with /p2p/<peer id> that others can dial."""
        if self.host is None:
            return []
        out = []
        for addr in self.host.get_addrs():
            text = str(addr)
            if "/p2p/" not in text:
                text = f"{text}/p2p/{self.peer_id}"
            out.append(text)
        return out

    def transports(self) -> list[str]:
        return self.listen_addrs

    def tool_for(self, req: IncomingRequest, protocol: str) -> Tool:
        if req.envelope and req.address:
            tool = self._by_address.get(req.address)
            if tool is None:
                # we do not route onward: nothing here answers to that address
                raise OlaneError(ErrorCode.NOT_FOUND, "Address not found", {"address": req.address})
            return tool
        return self._by_protocol.get(protocol) or self.tools[0]

    # -- calling other nodes -------------------------------------------------------

    async def connect(self, target: str) -> str:
        """Dial a multiaddr with /p2p/<peer id>; return the peer id. Idempotent."""
        self._require_running()
        info = parse_peer_multiaddr(target)
        peer_key = info.peer_id.to_string()
        if self.host.get_network().get_connections(info.peer_id):
            self._peers[target] = info.peer_id
            return peer_key
        try:
            with trio.fail_after(self.limits.dial_timeout):
                await self.host.connect(info)
        except trio.TooSlowError:
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET,
                             f"could not reach {target} within {self.limits.dial_timeout:g} s") from None
        except Exception as exc:
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"could not connect to {target}: {exc}") from None
        self._peers[target] = info.peer_id
        self._peers[peer_key] = info.peer_id
        return peer_key

    async def peer_protocols(self, target: str, wait: float = 5.0) -> list[str]:
        """The protocols a peer advertises through libp2p identify."""
        peer_key = await self.connect(target)
        peer_id = self._peers[peer_key]
        store = self.host.get_peerstore()
        with trio.move_on_after(wait):
            while True:
                try:
                    protocols = [str(p) for p in store.get_protocols(peer_id)]
                except Exception:
                    protocols = []
                if protocols:
                    return protocols
                await trio.sleep(0.01)
        return []

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
    ) -> StreamingCall:
        """Call a method and iterate its chunks: `async for chunk in node.use_streaming(...)`.

        `via` is the multiaddr (or peer id, once connected) of the node serving
        `address`. An error frame raises OlaneError after the chunks before it.
        `protocol` overrides the libp2p protocol dialed (e.g. `/o/reuse` to call
        back a peer over the connection it opened).
        """
        return StreamingCall(self, address, method, params, via=via, first_frame_timeout=first_frame_timeout,
                             idle_timeout=idle_timeout, codec=codec, protocol=protocol)

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
    ) -> Any:
        """Call a method; return the final frame's data (raises OlaneError on an error frame)."""
        call = StreamingCall(self, address, method, params, via=via, first_frame_timeout=timeout,
                             idle_timeout=timeout, codec=codec, streaming=False, protocol=protocol)
        return await call.result()

    # -- plumbing for StreamingCall --------------------------------------------------

    def _require_running(self) -> None:
        if self.host is None:
            raise OlaneError(ErrorCode.INVALID_STATE, "node is not running (use `async with node:`)")

    async def _resolve_peer(self, address: Address, via: str | None):
        self._require_running()
        network = self.host.get_network()
        if via is not None:
            peer = self._peers.get(via)
            if peer is None and _is_bare_peer(via):
                # "/p2p/<id>" or "<id>": a peer we already have a connection with (it may have dialed us)
                from libp2p.peer.id import ID

                try:
                    peer = ID.from_base58(via.rsplit("/", 1)[-1])
                except Exception:
                    raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"not a peer id: {via!r}") from None
                if not network.get_connections(peer):
                    raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"no connection to {via} and no address to dial")
                return peer
            if peer is None or not network.get_connections(peer):
                await self.connect(via)
                peer = self._peers[via]
            return peer
        # no transport given: any connected peer that serves the address
        store = self.host.get_peerstore()
        for peer in network.connections:
            try:
                if address.protocol in [str(p) for p in store.get_protocols(peer)]:
                    return peer
            except Exception:
                continue
        raise OlaneError(ErrorCode.NOT_FOUND, f"Address not found: no connected node serves {address}")

    async def _codec_for(self, peer, address: Address, protocol: str | None = None) -> str:
        if self.codec != "auto":
            return self.codec
        key = (peer.to_string(), protocol or address.protocol)
        codec = self._codecs.get(key)
        if codec is None:
            codec = JSON
            try:
                info = await StreamingCall(self, address, "identify", {}, via=peer.to_string(),
                                           first_frame_timeout=10, idle_timeout=10, codec=JSON,
                                           streaming=False, protocol=protocol).result()
                if isinstance(info, dict) and MSGPACK in (info.get("codecs") or ()):
                    codec = MSGPACK
            except OlaneError:
                pass
            self._codecs[key] = codec
        return codec

    def _take_stream_slot(self, peer):
        key = peer.to_string()
        used = self._slots.get(key, 0)
        if used >= self.limits.max_streams_per_connection:
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"{used} calls already open to {key} (limit {self.limits.max_streams_per_connection})")
        self._slots[key] = used + 1

        def release() -> None:
            self._slots[key] = self._slots.get(key, 1) - 1

        return release

    async def _open_stream(self, peer, address: Address, protocol: str | None = None):
        from libp2p.custom_types import TProtocol
        from libp2p.host.exceptions import StreamFailure

        try:
            with trio.fail_after(self.limits.dial_timeout):
                return await self.host.new_stream(peer, [TProtocol(protocol or address.protocol)])
        except StreamFailure as exc:
            raise OlaneError(ErrorCode.NOT_FOUND, "Address not found",
                             {"address": address.value, "reason": str(exc)}) from None
        except trio.TooSlowError:
            raise OlaneError(ErrorCode.TIMEOUT, f"opening a stream for {address} took over "
                                                f"{self.limits.dial_timeout:g} s") from None
        except OlaneError:
            raise
        except Exception as exc:
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"could not open a stream to {address}: {exc}") from None


def _is_bare_peer(text: str) -> bool:
    return text.startswith("/p2p/") or (not text.startswith("/") and text.startswith(("12D3", "Qm")))


class Client(Node):
    """A node that serves no tools of its own and only dials: `async with Client() as client:`."""

    def __init__(self, *, limits: Limits | None = None, codec: str = "auto", address: str | None = None,
                 seed: str | None = None) -> None:
        super().__init__((), listen=(), limits=limits, codec=codec, address=address, seed=seed)
