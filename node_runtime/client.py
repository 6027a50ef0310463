"""Calling olane tools: one request at a time per libp2p stream, pulled frame by
frame so that a slow consumer slows the sender (the Yamux window fills) instead
of filling our memory. A stream whose call ended with its terminal frame goes
back to the peer pool for the next call (no stream open, no multistream-select);
any other end resets it."""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterator

import trio

from . import codec as codecs
from .codec import JSON, MSGPACK
from .addresses import Address
from .errors import ErrorCode, OlaneError
from .framing import FrameDecoder, frame
from .libp2p_fixes import ProtocolRefused
from .messages import ChunkReader, ChunkResponse, Response, batch_chunk, new_id, parse_response, route_request
from .stream_io import STREAM_ENDED, abort_transport, close_quietly, reset_quietly, write_shielded
from .compression import Inflater

if TYPE_CHECKING:
    from .node import Node


class StreamingCall:
    """One call in flight. Iterate it for chunk data (`async for chunk in call`),
    or `responses()` for every frame with its sequence and size. Leaving early
    (break, cancel, deadline, `aclose()`) resets the stream, which stops the
    tool on the node. After the end, `final` holds the final frame's data.

    Deadlines: `timeout` is one absolute deadline for the whole call (dial,
    codec probe, stream open, every frame); `first_frame_timeout` and
    `idle_timeout` bound the wait for the first frame of this call and, once
    the frames read are handed out, for the next one (frames for other ids and
    partial frames do not count).
    Each ends the call with 4017 TIMEOUT."""

    #: ask our servers for a resumable stream / to join the shared stream of this key (node_runtime/resuming.py)
    resumable = False
    share: str | None = None

    def __init__(
        self,
        node: "Node",
        address: "str | Address",
        method: str,
        params: dict[str, Any] | None,
        *,
        via: str | None,
        first_frame_timeout: float | None,
        idle_timeout: float | None,
        codec: str | None,
        streaming: bool = True,
        protocol: str | None = None,
        timeout: float | None = None,
        compress: "str | bool | None" = None,
    ) -> None:
        self.node = node
        self.address = Address.parse(address)
        self.method = method
        self.params = dict(params or {})
        self.via = via
        limits = node.limits
        self.first_frame_timeout = limits.first_frame_timeout if first_frame_timeout is None else first_frame_timeout
        self.idle_timeout = limits.idle_timeout if idle_timeout is None else idle_timeout
        self.timeout = timeout
        self._deadline = float("inf")  # absolute, set when the call starts
        self._frame_deadline = float("inf")  # for the next frame of this call
        self.codec = codec
        self.streaming = streaming
        self.protocol = protocol
        self.id = new_id()
        self.final: Any = None
        self.final_response: Response | None = None
        self.error: OlaneError | None = None
        self.chunks = 0
        self.done = False
        self.cancelled = False  # ended by the caller before the final frame
        self.started_at: float | None = None  # time.monotonic() when the request was written
        self.wire_codec: str | None = None
        self._stream = None
        self._peer = None  # the libp2p peer the stream goes to
        self._release = None
        self._ended_cleanly = False  # the terminal frame arrived: the stream may serve another call
        self.reused_stream = False  # this call runs on a pooled stream
        self._decoder = FrameDecoder(limits.max_frame_bytes)
        self._payloads: deque[bytes] = deque()  # frames read, not yet decoded (see _next_frame)
        self._batch_frame: Response | None = None  # the batched frame being handed out chunk by chunk
        self._batch_items: list | None = None  # its chunks' data
        self._batch_pos = 0  # the next one to hand out
        self._batch_size = 0  # wire bytes credited to each
        self.batch = False  # asked the peer for batched chunk frames
        self._read_chunk = None  # ChunkReader.read: the chunk frames of our own servers, read fast
        self._got_frame = False  # a frame of this call was handed out since the last read
        self._frames = 0
        self.frames_after_final = 0  # frames for this id seen after its terminal frame
        #: "zstd": ask for a compressed answer; None: the node's choice (Node.compress); False: never
        self.compress = node.compress if compress is None else compress
        self.compressed = False  # the peer was asked for ("zstd") or may send ("accept") compressed regions
        self._inflater: Inflater | None = None
        self._extra: dict[str, Any] = {}  # extension flags for the envelope (only what the peer listed)
        self.wire_bytes = 0  # bytes read off the libp2p stream (compressed regions as they came)
        self._read_scope: trio.CancelScope | None = None  # the read waiting for a frame, if any

    @property
    def frames_read(self) -> int:
        """Frames read on this call's stream so far (a batched frame counts once)."""
        return self._frames

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._stream is not None or self.done:
            return
        if self.timeout is None:  # no deadline for the whole call: no cancel scope to pay for
            await self._start()
            return
        self._deadline = trio.current_time() + self.timeout
        with trio.move_on_at(self._deadline) as scope:
            await self._start()
        if scope.cancelled_caught:
            await self.aclose()
            self.error = self._timeout_error("before the request was sent (dialing, opening the stream)")
            raise self.error

    async def _start(self) -> None:
        node = self.node
        peers = node.peers
        peer_id = await peers.resolve(self.address, self.via)
        codec, batch = await self._negotiate(peer_id)
        self.batch = batch
        self.use_features(peers.features(peer_id, self.protocol or self.address.protocol))
        if self.streaming:
            self._read_chunk = ChunkReader(self.id, self.method, node.connection_id, codec).read
        self.wire_codec = codec  # the codec actually used (recordings name it)
        self._release = peers.take_stream_slot(peer_id)
        self._peer = peer_id
        try:
            self._stream, self.reused_stream = await peers.stream_for(peer_id, self.address, self.protocol, lazy=True)
            envelope = route_request(
                self.address.value, self.method, self.params, request_id=self.id,
                connection_id=node.connection_id, caller_address=node.address.value, streaming=self.streaming,
                batch=batch, extra=self._extra, resumable=self.resumable, share=self.share,
            )
            request = frame(codecs.encode(envelope, codec))
            self.started_at = time.monotonic()
            self._frame_deadline = trio.current_time() + self.first_frame_timeout
            try:
                await write_shielded(self._stream, request, node.limits.write_timeout)
            except Exception:
                if not self.reused_stream:
                    raise
                # the pooled stream went away between the check and the write: nothing
                # reached the node, so a new stream is as good
                stale, self._stream, self.reused_stream = self._stream, None, False
                await reset_quietly(stale)
                self._stream = await peers.open_stream(peer_id, self.address, self.protocol, lazy=True)
                await write_shielded(self._stream, request, node.limits.write_timeout)
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, OlaneError) or not isinstance(exc, Exception):
                raise
            raise OlaneError(ErrorCode.SEND_FAILED, f"could not send the request: {exc}") from None

    def _timeout_error(self, when: str) -> OlaneError:
        return OlaneError(ErrorCode.TIMEOUT, f"no complete answer from {self.address} within {self.timeout:g} s "
                                             f"({when})", {"timeout": self.timeout, "method": self.method})

    def needs_features(self) -> bool:
        """Whether this call must know the peer's extensions even with a chosen codec."""
        return self.compress == "zstd"

    def use_features(self, features: "frozenset[str] | None") -> None:
        """Ask for what the peer listed (and only that): compressed answers."""
        if features is None or "zstd" not in features or self.compress is False:
            return
        self._extra["_compress"] = "zstd" if self.compress == "zstd" else "accept"
        self.compressed = True
        limits = self.node.limits
        self._inflater = Inflater(limits.max_frame_bytes, limits.max_frame_bytes + limits.write_buffer_bytes)

    def stream_reusable(self) -> bool:
        """Whether this call's stream may serve another call once it ended: not after
        compressed regions (the node's zstd context lives with the stream, our
        decompression context with the call)."""
        return self._inflater is None or self._inflater.region_bytes == 0

    def restart_frame_wait(self) -> None:
        """The wait for this call's next frame starts now (a bidirectional call
        just sent: its answer may well wait for that), a read in progress included."""
        self._frame_deadline = trio.current_time() + (self.idle_timeout if self.chunks else self.first_frame_timeout)
        scope = self._read_scope
        if scope is not None:
            scope.deadline = min(self._frame_deadline, self._deadline)

    @property
    def data_bytes(self) -> int:
        """The bytes read as they would have been uncompressed (regions expanded)."""
        inflater = self._inflater
        if inflater is None:
            return self.wire_bytes
        return self.wire_bytes - inflater.region_bytes + inflater.plain_bytes

    async def _negotiate(self, peer) -> tuple[str, bool]:
        """(codec, batch): msgpack toward a peer whose `identify` lists it, JSON
        toward anyone else (PROTOCOL.md section 9); batched chunk frames from a
        peer whose `identify` lists `"frames": ["batch"]`
        (docs/protocol-extensions.md). Asked once per peer and protocol, and only
        when the node's `codec` is auto (or its `batch` is True)."""
        node = self.node
        chosen = self.codec or (None if node.codec == "auto" else node.codec)
        want_batch = self.streaming and (node.batch if node.batch is not None else chosen is None)
        if chosen is not None and not want_batch and not self.needs_features():
            return chosen, False

        async def probe() -> tuple[str, bool]:
            try:  # inside start(): the call's own deadline bounds it too
                info = await StreamingCall(node, self.address, "identify", {}, via=peer.to_string(),
                                           first_frame_timeout=10, idle_timeout=10, codec=JSON,
                                           streaming=False, protocol=self.protocol).result()
            except OlaneError:
                return JSON, False
            if not isinstance(info, dict):
                return JSON, False
            frames = info.get("frames")
            codecs_listed = info.get("codecs")
            listed = [f for f in frames if isinstance(f, str)] if isinstance(frames, list) else []
            for more in (info.get("compression"), info.get("streams")):  # "zstd"; "resume", "tap", "share"
                if isinstance(more, list):
                    listed += [c for c in more if isinstance(c, str)]
            node.peers.note_features(peer, self.protocol or self.address.protocol, frozenset(listed))
            return (MSGPACK if isinstance(codecs_listed, list) and MSGPACK in codecs_listed else JSON,
                    isinstance(frames, list) and "batch" in frames)

        learned, batch = await node.peers.wire_for(peer, self.protocol or self.address.protocol, probe)
        return chosen or learned, batch and want_batch

    async def aclose(self) -> None:
        """End the call. If the final frame has not come, reset the stream
        (cancel); if it has, give the stream to the pool (or close it)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            if not self.done:
                await reset_quietly(stream)
            elif not (self._ended_cleanly and not self._payloads and not self._decoder.buffered and not self.frames_after_final
                      and self.stream_reusable()
                      and self.node.peers.pool_stream(self._peer, self.protocol or self.address.protocol, stream)):
                await close_quietly(stream)
        if not self.done:
            self.done = True
            if self.error is None:
                self.error = OlaneError(ErrorCode.UNKNOWN, "cancelled by the caller")
                self.cancelled = True
        release, self._release = self._release, None
        if release is not None:
            release()

    def abort_connection(self) -> bool:
        """Close the TCP connection under this call at once, as a network failure
        would (tests and benchmarks of resumption). True when there was one."""
        return self._stream is not None and abort_transport(self._stream)

    async def __aenter__(self) -> "StreamingCall":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- reading ----------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._data()

    async def _data(self) -> AsyncIterator[Any]:
        try:
            await self.start()
            while True:
                items = self._batch_items
                if items is not None:  # the rest of a batched frame: no read, no Response object
                    pos = self._batch_pos
                    if pos < len(items):
                        self._batch_pos = pos + 1
                        self.chunks += 1
                        yield items[pos]
                        continue
                    self._batch_items = None
                response = await self.next_response()
                if response is None:
                    break
                if not response.last:
                    yield response.data
        finally:
            await self.aclose()

    async def responses(self) -> AsyncIterator[Response]:
        """Every frame of the answer: chunks, then the final one. An error frame
        raises OlaneError after the chunks before it."""
        try:
            await self.start()
            while True:
                items = self._batch_items
                if items is not None and not self.done:
                    # the rest of a batched frame, decoded already: handed out here, with
                    # no await, no read and no call but the chunk's own (cheap) Response
                    frame = self._batch_frame
                    rid, raw, size, first = frame.id, frame.raw, self._batch_size, frame.sequence
                    pos = self._batch_pos
                    end = len(items)
                    while pos < end:
                        self._batch_pos = pos + 1
                        self.chunks += 1
                        yield ChunkResponse(rid, items[pos], None if first is None else first + pos, size, raw)
                        if self._batch_items is not items or self.done:  # the caller went on by itself
                            break
                        pos = self._batch_pos
                    else:
                        self._batch_items = None
                    continue
                read = self._read_chunk
                if read is not None:
                    # the plain chunk frames of our own servers already read off the stream,
                    # handed out here with no await (the rest goes through next_response)
                    payloads = self._payloads
                    while payloads and not self.done and (response := read(payloads[0])) is not None:
                        payloads.popleft()
                        self._frames += 1
                        self.chunks += 1
                        self._got_frame = True
                        yield response
                response = await self.next_response()
                if response is None:
                    break
                yield response
        finally:
            await self.aclose()

    async def next_response(self) -> Response | None:
        """The next frame of this call; None after the final one."""
        if self.done:
            if self.error is not None and not self.cancelled:
                raise self.error
            return None
        response = await self._next_frame()
        if response.error is not None:
            self.error = response.error
            self.done = True
            self._ended_cleanly = True  # an error frame is a terminal frame like any other
            await self.aclose()
            raise response.error
        if response.last:
            self.final = response.data
            self.final_response = response
            self.done = True
            self._ended_cleanly = True
            await self.aclose()
        else:
            self.chunks += 1
        return response

    async def _read_more(self) -> None:
        stream = self._stream
        if stream is None:
            raise OlaneError(ErrorCode.INVALID_STATE, "call is closed")
        if self._got_frame:  # a frame of ours was handed out since the last wait: the idle wait starts now
            self._got_frame = False  # (once per read, not a clock read per frame)
            self._frame_deadline = trio.current_time() + self.idle_timeout
        try:
            with trio.move_on_at(min(self._frame_deadline, self._deadline)) as scope:
                self._read_scope = scope
                data = await stream.read(self.node.limits.read_size)
        except ProtocolRefused as exc:  # a stream opened lazily: the peer does not serve it after all
            self._read_scope = None
            await self._fail(OlaneError(ErrorCode.NOT_FOUND, "Address not found",
                                        {"address": self.address.value, "reason": str(exc)}))
        except STREAM_ENDED:
            data = b""
        finally:
            self._read_scope = None
        if scope.cancelled_caught:
            if trio.current_time() >= self._deadline:
                await self._fail(self._timeout_error(f"{self.chunks} chunks arrived"))
            first = self.chunks == 0
            timeout = self.first_frame_timeout if first else self.idle_timeout
            await self._fail(OlaneError(ErrorCode.TIMEOUT, f"no {'first' if first else 'next'} frame from "
                                                           f"{self.address} within {timeout:g} s",
                                        {"timeout": timeout, "method": self.method}))
        if not data:
            await self._fail(OlaneError(ErrorCode.RECEIVE_FAILED,
                                        f"stream from {self.address} ended before the final frame",
                                        {"chunks": self.chunks, "method": self.method}))
        self.wire_bytes += len(data)
        try:
            payloads = self._decoder.feed(data)
            if self._inflater is not None:  # compressed regions expanded into their frames
                payloads = self._inflater.expand(payloads)
            self._payloads.extend(payloads)
        except OlaneError as exc:
            await self._fail(OlaneError(ErrorCode.INVALID_RESPONSE, f"unreadable answer: {exc.message}"))

    async def _next_frame(self) -> Response:
        """Decode the next frame for this call, one at a time. A read holds up to
        hundreds of frames; decoding them all at once kept that many objects alive
        through the garbage collector's young passes, which promoted them, which
        made its full passes (100+ ms in the console) several a second."""
        items = self._batch_items
        if items is not None:
            pos = self._batch_pos
            if pos < len(items):
                self._batch_pos = pos + 1
                return batch_chunk(self._batch_frame, pos, self._batch_size)
            self._batch_items = None
        payloads = self._payloads
        decode = codecs.decode_answer
        read_chunk = self._read_chunk
        while True:
            while not payloads:
                await self._read_more()
            payload = payloads.popleft()
            self._frames += 1
            if read_chunk is not None and (response := read_chunk(payload)) is not None:  # a plain chunk of ours
                self._got_frame = True
                return response
            try:
                response = parse_response(decode(payload))
            except OlaneError as exc:
                await self._fail(OlaneError(ErrorCode.INVALID_RESPONSE, f"unreadable answer: {exc.message}"))
            rid = response.id
            if rid != self.id and str(rid) != self.id:
                continue  # a frame for another id: it does not hold off our idle deadline
            self._got_frame = True
            if response.batch and self.batch and not response.last:  # several chunks in one frame
                items = response.data
                if not items:
                    continue
                self._batch_frame = response
                self._batch_items = items
                self._batch_pos = 1
                self._batch_size = len(payload) // len(items)
                return batch_chunk(response, 0, len(payload) - self._batch_size * (len(items) - 1))
            response.size = len(payload)
            if response.last or response.error is not None:
                self._count_after_end()
            return response

    def _count_after_end(self) -> None:
        """The rest of the read that held the terminal frame is ignored, but frames
        for this id are counted: a protocol slip worth showing (TypeScript tools
        failing mid-stream send two terminal frames)."""
        payloads = self._payloads
        while payloads:
            payload = payloads.popleft()
            self._frames += 1
            try:
                message, _ = codecs.decode(payload)
                response = parse_response(message)
            except OlaneError:
                break
            if response.id == self.id or str(response.id) == self.id:
                self.frames_after_final += 1
        payloads.clear()

    async def _fail(self, error: OlaneError) -> None:
        self.error = error
        self.done = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await reset_quietly(stream)
        release, self._release = self._release, None
        if release is not None:
            release()
        raise error

    # -- one-answer use ---------------------------------------------------------

    async def result(self) -> Any:
        """Read to the end; return the final frame's data (chunks are dropped)."""
        async for _ in self.responses():
            pass
        return self.final
