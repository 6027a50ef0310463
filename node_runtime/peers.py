"""The peer layer: one libp2p host and everything about the peers it talks to.

Both directions use it. Calling (`client.StreamingCall`) resolves a peer, asks
which codec it speaks, takes a stream slot and opens a stream; serving
(`server.StreamSession`) asks which peer a stream came from. It is the one
place that dials, keeps per-peer state (codecs learned, stream slots in use,
idle streams pooled for reuse) and turns py-libp2p's dial and stream-open
failures into `OlaneError` codes.
py-libp2p's sharp edges under it are wrapped in `host.py` and `stream_io.py`.
"""
from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager, nullcontext
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import trio

from .addresses import Address
from .errors import ErrorCode, OlaneError
from .host import key_pair_from_seed, new_olane_host, parse_peer_multiaddr
from .libp2p_fixes import (admit_only, answer_protocol_select_at_once, fair_yamux_writes, lazy_protocol_select,
                           pipeline_protocol_select, quick_yamux_locks, release_inbound_slots_on_close, tcp_read_ahead,
                           window_updates_go_style)
from .limits import Limits
from .stream_io import reset_quietly

#: `handler(stream)` for one libp2p protocol
StreamHandler = Callable[[Any], Awaitable[None]]

#: seconds closing our connections may take when the pool stops (the peer sees the close)
CLOSE_GRACE = 1.0


class PeerPool:
    """The libp2p host of one node and its peers. `run()` starts the host and
    serves `handlers`; the other methods need it running."""

    def __init__(self, *, seed: str | None, listen: Iterable[str], limits: Limits, key: bytes | None = None,
                 allow: Iterable[str] | None = None, busy: Callable[[], Iterable[str]] = tuple) -> None:
        self.seed = seed
        self.key = key
        self.listen = [str(a) for a in listen]
        self.limits = limits
        self.host = None
        self.peer_id: str | None = None
        self.allowed: frozenset[str] | None = None if allow is None else frozenset(allow)
        self._busy = busy  # peer ids with streams being served (the node's part of "in use")
        self._known: dict[str, Any] = {}  # multiaddr or peer id text -> libp2p peer ID
        self._codecs: dict[tuple[str, str], str] = {}  # (peer id, protocol) -> codec it speaks
        self._batches: dict[tuple[str, str], bool] = {}  # (peer id, protocol) -> sends batched chunk frames
        self._features: dict[tuple[str, str], frozenset[str]] = {}  # (peer id, protocol) -> extensions it listed
        self._probing: dict[tuple[str, str], trio.Event] = {}  # identify asked, answer not yet in
        self._slots: dict[str, int] = {}  # peer id -> streams we have open to it
        self._last_used: dict[str, float] = {}  # peer id -> when a stream of ours last used it
        self._dialed_at: dict[str, float] = {}  # peer id -> when we last dialed it
        self._proven: set[str] = set()  # peers a stream opened to since we last dialed them
        # (peer id, protocol) -> idle streams a call ended on normally, oldest first, with when
        self._pooled: dict[tuple[str, str], deque[tuple[Any, float]]] = {}
        self.idle_closed = 0  # connections closed for being idle
        self.streams_opened = 0  # outgoing streams opened (stream open + multistream-select)
        self.streams_reused = 0  # outgoing calls that took a pooled stream instead

    @asynccontextmanager
    async def run(self, handlers: dict[str, StreamHandler]) -> AsyncIterator["PeerPool"]:
        """Start the host, serve `handlers`; on exit close every connection (the
        peers see it at once) and stop. An exception from the body comes out as
        itself, not inside the ExceptionGroup py-libp2p's nurseries would wrap
        it in."""
        try:
            async with self._running(handlers):
                yield self
        except BaseExceptionGroup as group:
            sole = sole_exception(group)
            if sole is None:
                raise
            raise sole.with_traceback(sole.__traceback__) from None

    @asynccontextmanager
    async def _running(self, handlers: dict[str, StreamHandler]) -> AsyncIterator[None]:
        import multiaddr
        from libp2p.custom_types import TProtocol

        key_pair = await trio.to_thread.run_sync(key_pair_from_seed, self.seed, self.key)
        self.host = new_olane_host(key_pair, self.limits.dial_timeout)
        self.peer_id = self.host.get_id().to_string()
        swarm = self.host.get_network()
        release_inbound_slots_on_close(swarm)
        admit_only(swarm, self.is_allowed)
        pipeline_protocol_select(self.host)
        answer_protocol_select_at_once(self.host)
        window_updates_go_style()
        quick_yamux_locks()
        tcp_read_ahead()
        fair_yamux_writes()
        async with self.host.run(listen_addrs=[multiaddr.Multiaddr(a) for a in self.listen]):
            for protocol, handler in handlers.items():
                self.host.set_stream_handler(TProtocol(protocol), handler)
            async with trio.open_nursery() as nursery:
                if self.limits.idle_connection_timeout > 0:
                    nursery.start_soon(self._close_idle_connections)
                if self.limits.pooled_streams_per_peer > 0:
                    nursery.start_soon(self._retire_pooled_streams)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
                    with trio.CancelScope(shield=True):
                        await self.close_all(CLOSE_GRACE)

    # -- who may connect --------------------------------------------------------------

    def is_allowed(self, peer_id: str) -> bool:
        return self.allowed is None or peer_id in self.allowed

    def set_allowlist(self, peer_ids: Iterable[str] | None) -> None:
        """Admit only these peer ids from now on (None: everyone). Connections
        already open from peers no longer allowed are closed by `close_disallowed`."""
        self.allowed = None if peer_ids is None else frozenset(peer_ids)

    async def close_disallowed(self) -> int:
        closed = 0
        for peer in list(self.host.get_network().connections):
            if not self.is_allowed(peer.to_string()):
                await self._close_peer(peer)
                closed += 1
        return closed

    # -- connections ------------------------------------------------------------------

    def connected_peers(self) -> list[str]:
        if self.host is None:
            return []
        return [peer.to_string() for peer in self.host.get_network().connections]

    async def close_all(self, grace: float = CLOSE_GRACE) -> None:
        """Close every connection, all within `grace` seconds. Used as the pool
        stops: once each socket is closed (the peer sees it) py-libp2p's own
        teardown is cut short, as its 0.1 s sleeps added ~200 ms to every exit."""
        if self.host is None:
            return
        network = self.host.get_network()
        muxed = [conn.muxed_conn for conns in network.get_connections_map().values() for conn in conns]
        # a close py-libp2p began itself and that was cancelled part way (the whole host
        # stopping at once cancels it before the socket is closed): nobody finishes it,
        # so its socket stays open and its event unset, and we waited out the grace (1 s
        # per node at every console quit)
        cut_short = [conn.muxed_conn for conns in network.get_connections_map().values() for conn in conns
                     if _close_cut_short(conn)]
        with trio.move_on_after(grace):
            async with trio.open_nursery() as nursery:
                for peer in list(network.connections):
                    nursery.start_soon(self._close_peer, peer)
                for conn in cut_short:
                    nursery.start_soon(_close_quietly, conn)
                for conn in muxed:
                    closed = getattr(conn, "event_closed", None)
                    if isinstance(closed, trio.Event):
                        await closed.wait()
                    else:  # another muxer: let its close run to the end
                        await trio.sleep_forever()
                nursery.cancel_scope.cancel()

    async def _close_peer(self, peer) -> None:
        try:
            await self.host.get_network().close_peer(peer)
        except Exception:
            pass
        key = peer.to_string()
        self._last_used.pop(key, None)
        for pool_key in [k for k in self._pooled if k[0] == key]:
            self._pooled.pop(pool_key, None)  # their connection is gone with them

    async def _close_idle_connections(self) -> None:
        """Close connections no olane stream has used, in either direction, for
        `Limits.idle_connection_timeout` seconds."""
        timeout = self.limits.idle_connection_timeout
        every = max(0.05, min(30.0, timeout / 4))
        while True:
            await trio.sleep(every)
            now = trio.current_time()
            busy = set(self._busy()) | set(self._slots)  # pooled idle streams keep nothing busy
            for peer in list(self.host.get_network().connections):
                key = peer.to_string()
                if key in busy:
                    self._last_used[key] = now
                    continue
                since = self._last_used.setdefault(key, now)
                if now - since >= timeout:
                    self.idle_closed += 1
                    with trio.move_on_after(CLOSE_GRACE):
                        await self._close_peer(peer)

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
        self._dialed_at[peer_key] = trio.current_time()
        self._proven.discard(peer_key)
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

    async def wire_for(self, peer, protocol: str,
                       probe: Callable[[], Awaitable[tuple[str, bool]]]) -> tuple[str, bool]:
        """(codec, batches) `peer` speaks on `protocol`: the codec, and whether it
        can send several chunks per frame; learned once by `probe()` (an
        `identify` call), then remembered."""
        key = (peer.to_string(), protocol)
        codec = self._codecs.get(key)
        if codec is None:
            asking = self._probing.get(key)
            if asking is not None:  # another call is asking already: one identify, not one per call
                await asking.wait()
                codec = self._codecs.get(key)
            if codec is None:
                asking = self._probing[key] = trio.Event()
                try:
                    codec, batch = await probe()
                    self._codecs[key] = codec
                    self._batches[key] = batch
                finally:
                    self._probing.pop(key, None)
                    asking.set()
        return codec, self._batches.get(key, False)

    def note_features(self, peer, protocol: str, features: "frozenset[str]") -> None:
        """The extensions `peer` listed in its `identify` answer (its `frames`,
        `compression` and `streams` entries: "batch", "input", "zstd", "resume",
        "tap", "share"): the one record of them, learned with its codec."""
        self._features[(peer.to_string(), protocol)] = frozenset(features)

    def features(self, peer, protocol: str) -> "frozenset[str] | None":
        """What note_features recorded; None when `peer` was never asked."""
        return self._features.get((peer.to_string(), protocol))

    def codec_of(self, peer, protocol: str) -> str | None:
        """The codec learned for `peer` on `protocol` (wire_for), or None when not asked yet."""
        return self._codecs.get((peer.to_string(), protocol))

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

    # -- streams: pooled for reuse, or opened ----------------------------------------

    async def stream_for(self, peer, address: Address, protocol: str | None = None, *,
                         lazy: bool = False) -> tuple[Any, bool]:
        """(stream, reused): an idle stream to `peer` for this protocol that an
        earlier call ended on normally, else a new one (`open_stream`). A pooled
        stream the peer closed or reset, or idle past
        `Limits.pooled_stream_idle_timeout`, is dropped, never handed out."""
        pool = self._pooled.get((peer.to_string(), protocol or address.protocol))
        if pool:
            oldest_allowed = trio.current_time() - self.limits.pooled_stream_idle_timeout
            while pool:
                stream, since = pool.pop()  # the most recently used: the least likely to be closed
                if since >= oldest_allowed and _reusable(stream):
                    self.streams_reused += 1
                    return stream, True
                await reset_quietly(stream)
        return await self.open_stream(peer, address, protocol, lazy=lazy), False

    def pool_stream(self, peer, protocol: str, stream) -> bool:
        """Keep `stream` for the next call to `peer` on `protocol`, if the pool
        has room and the stream is still open both ways. Only for a stream whose
        call got its terminal frame with nothing left half-read; False: the
        caller closes it as before."""
        limit = self.limits.pooled_streams_per_peer
        if limit <= 0 or self.host is None or not _reusable(stream):
            return False
        key = (peer.to_string(), protocol)
        pool = self._pooled.get(key)
        if pool is None:
            pool = self._pooled[key] = deque()
        if len(pool) >= limit:
            return False
        pool.append((stream, trio.current_time()))
        return True

    def pooled_streams(self) -> int:
        """Idle streams kept for reuse now, over all peers."""
        return sum(len(pool) for pool in self._pooled.values())

    async def _retire_pooled_streams(self) -> None:
        """Reset pooled streams idle past `Limits.pooled_stream_idle_timeout` (the
        node at the other end keeps a session for each)."""
        timeout = self.limits.pooled_stream_idle_timeout
        every = max(0.05, min(10.0, timeout / 4))
        while True:
            await trio.sleep(every)
            oldest_allowed = trio.current_time() - timeout
            for key, pool in list(self._pooled.items()):
                while pool and (pool[0][1] < oldest_allowed or not _reusable(pool[0][0])):
                    stream, _ = pool.popleft()
                    await reset_quietly(stream)
                if not pool:
                    self._pooled.pop(key, None)

    async def open_stream(self, peer, address: Address, protocol: str | None = None, *, lazy: bool = False):
        """A new stream to `peer` for `address` (or `protocol`): 4002 when the
        peer does not serve it, 4017 when opening takes too long. `lazy`: toward
        a peer of ours (its olane identify listed our extensions) whose libp2p
        identify lists the protocol, the stream is handed out before the peer's
        answer, which its first read takes (libp2p_fixes fix 9: `ProtocolRefused`
        there when the peer answers "na" after all). Toward anyone else (TypeScript
        olane) streams open as fix 4 opens them: js-libp2p keeps what follows a
        protocol, but that was not tried against a live TypeScript node."""
        from libp2p.custom_types import TProtocol
        from libp2p.host.exceptions import StreamFailure

        if lazy:
            wanted = protocol or address.protocol
            lazy = bool(self.features(peer, wanted)) and self.lists_protocol(peer, wanted)
        try:
            with trio.fail_after(self.limits.dial_timeout), lazy_protocol_select() if lazy else nullcontext():
                try:
                    stream = await self.host.new_stream(peer, [TProtocol(protocol or address.protocol)])
                except Exception as exc:
                    if "no valid connections" not in str(exc).lower():
                        raise
                    # the connection died (its socket closed) but py-libp2p still lists it for a
                    # while instead of dialing anew: close it, then dial once
                    await self._close_peer(peer)
                    try:
                        stream = await self.host.new_stream(peer, [TProtocol(protocol or address.protocol)])
                    except Exception as again:
                        if _refused(again):  # nothing listens there: the node is gone (or moved)
                            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET,
                                             f"{peer.to_string()} refused the connection: its node is not "
                                             f"running there any more") from None
                        raise exc from None  # what the first attempt said (e.g. closed by an allowlist)
            self._proven.add(peer.to_string())
            self.streams_opened += 1
            return stream
        except StreamFailure as exc:
            raise OlaneError(ErrorCode.NOT_FOUND, "Address not found",
                             {"address": address.value, "reason": str(exc)}) from None
        except trio.TooSlowError:
            raise OlaneError(ErrorCode.TIMEOUT, f"opening a stream for {address} took over "
                                                f"{self.limits.dial_timeout:g} s") from None
        except OlaneError:
            raise
        except Exception as exc:
            key = peer.to_string()
            dialed = self._dialed_at.get(key)
            if (dialed is not None and key not in self._proven and trio.current_time() - dialed < 10
                    and "connection" in str(exc).lower()):  # closed before any stream of ours got through
                # what a node with an allowlist does to a stranger: it closes the connection
                # as soon as Noise has proven who is calling, before any stream
                raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET,
                                 f"the node {key} closed the connection right after the handshake: most likely it "
                                 f"does not allow this caller (peer id {self.peer_id}); ask its operator to add it "
                                 f"(`olane node --allow`)", {"peerId": self.peer_id}) from None
            raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, f"could not open a stream to {address}: {exc}") from None

    def lists_protocol(self, peer, protocol: str) -> bool:
        """Whether `peer`'s libp2p identify listed `protocol`."""
        try:
            return protocol in self.host.get_peerstore().get_protocols(peer)
        except Exception:  # not identified (yet)
            return False

    @staticmethod
    def peer_of(stream) -> str | None:
        """The peer id a stream's connection goes to."""
        try:
            return stream.muxed_conn.peer_id.to_string()
        except Exception:
            return None


def _refused(exc: BaseException, depth: int = 0) -> bool:
    """Whether a py-libp2p dial failure comes from a refused TCP connection
    (it wraps the OSError a few levels down, in causes and multi-errors)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if depth > 8:
        return False
    grouped = getattr(exc, "exceptions", None) or getattr(exc, "errors", None) or ()  # py-libp2p's MultiError: errors
    inner = [exc.__cause__, exc.__context__, *(grouped if isinstance(grouped, (list, tuple)) else ())]
    return any(e is not None and _refused(e, depth + 1) for e in inner)


def _reusable(stream) -> bool:
    """Open both ways, on a live connection, with no unread bytes waiting (a late
    frame, or part of one, would be read by the next call)."""
    muxed = getattr(stream, "muxed_stream", None)
    if muxed is None:
        return False
    if (getattr(muxed, "closed", True) or getattr(muxed, "send_closed", True) or getattr(muxed, "recv_closed", True)
            or getattr(muxed, "reset_received", True)):
        return False
    conn = getattr(muxed, "conn", None)
    if conn is None or getattr(conn, "is_closed", True):
        return False
    shutting_down = getattr(conn, "event_shutting_down", None)
    if shutting_down is not None and shutting_down.is_set():
        return False
    buffers = getattr(conn, "stream_buffers", None)
    return not (buffers and buffers.get(muxed.stream_id))


def sole_exception(group: BaseExceptionGroup) -> BaseException | None:
    """The one exception in a (nested) group, Cancelled aside; None when several."""
    leaves = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


def _is_bare_peer(text: str) -> bool:
    return text.startswith("/p2p/") or (not text.startswith("/") and text.startswith(("12D3", "Qm")))


def _close_cut_short(conn) -> bool:
    """A connection the swarm counts as closed whose muxer never finished closing."""
    swarm_closed = getattr(conn, "event_closed", None)
    muxer_closed = getattr(conn.muxed_conn, "event_closed", None)
    return (isinstance(swarm_closed, trio.Event) and isinstance(muxer_closed, trio.Event)
            and swarm_closed.is_set() and not muxer_closed.is_set())


async def _close_quietly(conn) -> None:
    try:
        await conn.close()  # GO_AWAY (if not sent yet), the socket, event_closed
    except Exception:
        pass
