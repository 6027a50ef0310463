"""The peer layer: one libp2p host and everything about the peers it talks to.

Both directions use it. Calling (`client.StreamingCall`) resolves a peer, asks
which codec it speaks, takes a stream slot and opens a stream; serving
(`server.StreamSession`) asks which peer a stream came from. It is the one
place that dials, keeps per-peer state (codecs learned, stream slots in use)
and turns py-libp2p's dial and stream-open failures into `OlaneError` codes.
py-libp2p's sharp edges under it are wrapped in `host.py` and `stream_io.py`.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import trio

from .addresses import Address
from .errors import ErrorCode, OlaneError
from .host import key_pair_from_seed, new_olane_host, parse_peer_multiaddr
from .limits import Limits

#: `handler(stream)` for one libp2p protocol
StreamHandler = Callable[[Any], Awaitable[None]]


class PeerPool:
    """The libp2p host of one node and its peers. `run()` starts the host and
    serves `handlers`; the other methods need it running."""

    def __init__(self, *, seed: str | None, listen: Iterable[str], limits: Limits, key: bytes | None = None) -> None:
        self.seed = seed
        self.key = key
        self.listen = [str(a) for a in listen]
        self.limits = limits
        self.host = None
        self.peer_id: str | None = None
        self._known: dict[str, Any] = {}  # multiaddr or peer id text -> libp2p peer ID
        self._codecs: dict[tuple[str, str], str] = {}  # (peer id, protocol) -> codec it speaks
        self._slots: dict[str, int] = {}  # peer id -> streams we have open to it

    @asynccontextmanager
    async def run(self, handlers: dict[str, StreamHandler]) -> AsyncIterator["PeerPool"]:
        import multiaddr
        from libp2p.custom_types import TProtocol

        key_pair = await trio.to_thread.run_sync(key_pair_from_seed, self.seed, self.key)
        self.host = new_olane_host(key_pair, self.limits.dial_timeout)
        self.peer_id = self.host.get_id().to_string()
        async with self.host.run(listen_addrs=[multiaddr.Multiaddr(a) for a in self.listen]):
            for protocol, handler in handlers.items():
                self.host.set_stream_handler(TProtocol(protocol), handler)
            yield self

    @property
    def running(self) -> bool:
        return self.host is not None

    def require_running(self) -> None:
        if self.host is None:
            raise OlaneError(ErrorCode.INVALID_STATE, "node is not running (use `async with node:`)")

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

    # -- dialing and resolving ------------------------------------------------------

    async def connect(self, target: str) -> str:
        """Dial a multiaddr with /p2p/<peer id>; return the peer id. Idempotent."""
        self.require_running()
        info = parse_peer_multiaddr(target)
        peer_key = info.peer_id.to_string()
        if self.host.get_network().get_connections(info.peer_id):
            self._known[target] = info.peer_id
            return peer_key
        try:
            with trio.fail_after(self.limits.dial_timeout):
                await self.host.connect(info)
        except trio.TooSlowError:
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET,
                             f"could not reach {target} within {self.limits.dial_timeout:g} s") from None
        except Exception as exc:
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"could not connect to {target}: {exc}") from None
        self._known[target] = info.peer_id
        self._known[peer_key] = info.peer_id
        return peer_key

    async def resolve(self, address: Address, via: str | None):
        """The libp2p peer to send a call for `address` to: the one at `via` (a
        multiaddr, dialed if need be, or the peer id of a peer already connected),
        else any connected peer that serves `address`."""
        if via is not None:
            return await self.peer_at(via)
        self.require_running()
        network = self.host.get_network()
        store = self.host.get_peerstore()
        for peer in network.connections:
            try:
                if address.protocol in [str(p) for p in store.get_protocols(peer)]:
                    return peer
            except Exception:
                continue
        raise OlaneError(ErrorCode.NOT_FOUND, f"Address not found: no connected node serves {address}")

    async def peer_at(self, via: str):
        """The libp2p peer at `via`: a multiaddr (dialed if need be), or the peer id
        of a peer already connected (it may have dialed us)."""
        self.require_running()
        network = self.host.get_network()
        peer = self._known.get(via)
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
            peer = self._known[via]
        return peer

    async def peer_protocols(self, target: str, wait: float = 5.0) -> list[str]:
        """The protocols a peer advertises through libp2p identify."""
        peer_key = await self.connect(target)
        peer_id = self._known[peer_key]
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

    # -- per-peer state -------------------------------------------------------------

    async def codec_for(self, peer, protocol: str, probe: Callable[[], Awaitable[str]]) -> str:
        """The codec `peer` speaks on `protocol`: learned once by `probe()` (an
        `identify` call), then remembered."""
        key = (peer.to_string(), protocol)
        codec = self._codecs.get(key)
        if codec is None:
            codec = await probe()
            self._codecs[key] = codec
        return codec

    def codecs_learned(self) -> dict[tuple[str, str], str]:
        """(peer id, protocol) -> the codec learned for it."""
        return dict(self._codecs)

    def take_stream_slot(self, peer) -> Callable[[], None]:
        """Count one more stream open to `peer` (py-libp2p stalls past 256 a
        connection); returns the function that gives the slot back. Over the
        limit -> 4016."""
        key = peer.to_string()
        used = self._slots.get(key, 0)
        if used >= self.limits.max_streams_per_connection:
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"{used} calls already open to {key} (limit {self.limits.max_streams_per_connection})")
        self._slots[key] = used + 1

        def release() -> None:
            left = self._slots.get(key, 1) - 1
            if left > 0:
                self._slots[key] = left
            else:
                self._slots.pop(key, None)

        return release

    async def open_stream(self, peer, address: Address, protocol: str | None = None):
        """A new stream to `peer` for `address` (or `protocol`): 4002 when the
        peer does not serve it, 4017 when opening takes too long."""
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

    @staticmethod
    def peer_of(stream) -> str | None:
        """The peer id a stream's connection goes to."""
        try:
            return stream.muxed_conn.peer_id.to_string()
        except Exception:
            return None


def _is_bare_peer(text: str) -> bool:
    return text.startswith("/p2p/") or (not text.startswith("/") and text.startswith(("12D3", "Qm")))
