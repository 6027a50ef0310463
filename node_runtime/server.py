"""Serving one incoming libp2p stream: read request frames, run each request as
its own task, answer on the same stream (several requests may share a stream,
matched by id), exactly one terminal frame per request.

A stream stays open between requests (callers pool streams for their next
call). While no request runs on it, it keeps its connection from no idle
timeout and counts against no request limit; idle past
`Limits.idle_stream_timeout`, the node resets it.

No input ends more than its own request: a frame that cannot be read is
answered with an error frame (or, when framing is lost, the stream is reset),
and a failure while answering (an answer that cannot be encoded, or is larger
than a frame may be) becomes that request's error frame."""
from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from . import codec as codecs
from .errors import ErrorCode, OlaneError
from .framing import FrameDecoder, frame
from .messages import (ChunkEncoder, IncomingRequest, answer_too_large, error_frame, final_frame, parse_request,
                       unreadable_frame_error)
from .stream_io import STREAM_ENDED, FrameWriter, StreamGone, close_quietly, peer_gone, reset_quietly
from .compression import Squeezed, StreamCompressor
from .incoming import INPUT_METHOD, CallerGone, Incoming, Inputs
from .limits import STOP_GRACE
from .streams import InputBudget
from .live_frames import serve_live
from .tools import Request, StreamEnd

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("olane.server")

#: JSON5 frames are parsed one at a time, off the trio thread (see codec.decode_json5)
_JSON5_THREADS = trio.CapacityLimiter(1)


class StreamSession:
    """All requests that arrive on one stream."""

    def __init__(self, node: "Node", stream, protocol: str) -> None:
        self.node = node
        self.stream = stream
        self.protocol = protocol
        self.limits = node.limits
        self.writer = FrameWriter(stream, self.limits.write_buffer_bytes, self.limits.write_timeout)
        self.peer_id = node.peers.peer_of(stream)
        self.budget = None  # this stream's share of Limits.max_buffered_bytes (streams.InputBudget)
        # bidirectional calls' input queues (incoming.py)
        self.inputs = Inputs(self.limits, partial(InputBudget, node.streams), partial(peer_gone, stream))
        self.running = 0  # requests running on this stream now
        self.last_active = trio.current_time()  # when a request last arrived or ended
        self._decoder: FrameDecoder | None = None

    @property
    def busy(self) -> bool:
        """A request runs on this stream, or part of one has arrived."""
        return self.running > 0 or (self._decoder is not None and self._decoder.buffered > 0)

    async def serve(self) -> None:
        metrics = self.node.metrics
        metrics.streams_opened()
        reset = False
        try:
            with self.node.streams.serving(self) as budget:
                self.budget = budget
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.writer.run)
                    async with trio.open_nursery() as requests:
                        reset = await self._read_requests(requests)
                        if reset:
                            requests.cancel_scope.cancel()
                    # every request has sent its terminal frame (or was cancelled)
                    self.writer.close()
        finally:
            metrics.streams_closed()
            # bounded: a peer that reads nothing must not hold a stopping node
            timeout = STOP_GRACE if self.node.stopping else 2.0
            if reset or self.writer.error is not None:
                await reset_quietly(self.stream, timeout)
            else:
                await close_quietly(self.stream, timeout)

    async def _read_requests(self, requests: trio.Nursery) -> bool:
        """Read frames until the client goes away. Returns True when the stream
        must be reset (client gone mid-request, or an unreadable byte stream)."""
        limits = self.limits
        decoder = self._decoder = FrameDecoder(limits.max_frame_bytes)
        stream = self.stream
        read_size = limits.read_size
        budget = self.budget
        while True:
            try:
                data = await stream.read(read_size)
            except STREAM_ENDED:
                # EOF or reset: a client never half-closes before its final frame,
                # so whatever is still running has lost its caller.
                return bool(requests.child_tasks)
            if not data:
                return bool(requests.child_tasks)
            self.last_active = trio.current_time()
            try:
                payloads = decoder.feed(data)
            except OlaneError as exc:  # a frame over the limit, a broken length prefix
                await self._send_unreadable(exc)
                return True  # framing is lost: nothing after this can be read
            if budget is not None and not budget.hold(decoder.buffered):
                await self._send_unreadable(OlaneError(
                    ErrorCode.CONNECTION_LIMIT_REACHED,
                    f"node holds {limits.max_buffered_bytes} bytes of unfinished frames; this stream is reset",
                    {"limit": limits.max_buffered_bytes}))
                return True
            for payload in payloads:
                try:
                    read = await self._read_request(payload)
                except CallerGone:  # it left while a full input queue held this reader
                    return True
                if read is not None:
                    # its input may follow in this very read: queue it from now on (a second
                    # request reusing a running one's id gets a failed queue of its own)
                    incoming = self.inputs.open(read[0].id) if read[0].input else None
                    requests.start_soon(self._run_request, *read, incoming)

    async def _read_request(self, payload: bytes) -> "tuple[IncomingRequest, str] | None":
        """One payload -> (request, codec), or None after answering it with 4009."""
        limits = self.limits
        message = None
        codec = codecs.JSON
        try:
            try:
                message, codec = codecs.decode(payload)
            except codecs.NotStrictJson:
                message = await trio.to_thread.run_sync(
                    codecs.decode_json5, payload, limits.max_json5_bytes, limits.max_nesting,
                    limiter=_JSON5_THREADS)
            codecs.check_nesting(message, limits.max_nesting)
            if message.get("method") == INPUT_METHOD:  # a chunk of a bidirectional call's input
                await self.inputs.deliver(message, len(payload))
                return None
            return parse_request(message, limits.max_id_bytes), codec
        except OlaneError as exc:
            await self._send_unreadable(exc, message.get("id") if isinstance(message, dict) else None, codec)
            return None

    async def _send_unreadable(self, exc: OlaneError, req_id: Any = None, codec: str = codecs.JSON) -> None:
        self.node.metrics.errors += 1
        if not safe_id(req_id, self.limits.max_id_bytes):
            req_id = None  # never echo what we refused to read
        try:
            await self._send(unreadable_frame_error(exc, req_id), codec)
            with trio.move_on_after(2):
                await self.writer.drain()
        except OlaneError:
            pass

    async def _run_request(self, req: IncomingRequest, codec: str, incoming: "Incoming | None" = None) -> None:
        self.running += 1
        try:
            await self._run_counted(req, codec, incoming)
        finally:
            self.running -= 1
            self.last_active = trio.current_time()

    async def retire_if_idle(self, idle_for: float) -> None:
        """Reset the stream if nothing has run or arrived on it for `idle_for`
        seconds (StreamRegistry.retire_idle); its read loop then ends. A reset,
        not a cancelled read: a read cut short mid window-update breaks Noise."""
        if not self.busy and trio.current_time() - self.last_active >= idle_for:
            self.node.metrics.idle_streams_closed += 1
            await reset_quietly(self.stream)

    async def _run_counted(self, req: IncomingRequest, codec: str, incoming: "Incoming | None") -> None:
        node = self.node
        metrics = node.metrics
        streaming = False
        sequence = 0
        squeeze = False
        record = None  # this stream in node.streams (a plain streaming request)
        answer = None
        try:
            metrics.begin(req, self.peer_id)
        except OlaneError as exc:
            if incoming is not None:
                self.inputs.close(req.id, incoming)
            await self._terminal(error_frame(req, exc), codec)
            return
        try:
            try:
                tool = node.router.local(req, self.protocol)
                if tool is None:  # an address not served here: relay it onward
                    if incoming is not None:
                        raise OlaneError(ErrorCode.NOT_IMPLEMENTED, "a call that sends input is not relayed: "
                                                                    "call the node serving the address directly")
                    # the next hop answers us plain (routing.relay drops `_compress`); we compress
                    # toward our caller when it asked
                    squeeze = req.compress is not None and self._squeezes(req)
                    await node.router.forward(req, codec, partial(self._send_frames, squeeze=squeeze))
                    return
                spec = tool.resolve(req.method)
                kwargs = spec.bind(req.params)
                request = Request(
                    id=req.id, method=req.method, params=req.params, caller_address=req.caller_address,
                    connection_id=req.connection_id, peer_id=self.peer_id, node=node,
                )
                if spec.takes_input or incoming is not None:
                    request.incoming = _input_for(spec, incoming, kwargs)
                if req.compress is not None:
                    squeeze = self._squeezes(req)
                if spec.streaming and (spec.sink or req.resumable or req.share is not None):
                    streaming = True  # a tap, a resume, a resumable or shared stream (node_runtime/live.py)
                    answer = await serve_live(self, req, codec, tool, spec, kwargs, request)
                elif spec.streaming:
                    streaming = True
                    record = node.streams.begin(req, self.peer_id, tool.address.value)
                    taps = record.taps  # watchers' copies (list_streams / tap); empty almost always
                    final_data: Any = _DEFAULT_FINAL
                    deltas: list[str] = []
                    encoder = ChunkEncoder(req, codec)
                    fast_encode = encoder.fast_data
                    encode = encoder.data
                    chunk_payload = encoder.chunk
                    writer = self.writer
                    limit = self.limits.max_frame_bytes
                    batch: _Batch | None = None
                    join = None  # batch.items.append
                    joined = 0  # bytes in batch so far (the envelope roughly, then each chunk and its comma)
                    # a compressed answer goes through _Batch entries (joined only when the caller asked for batches)
                    batch_bytes = encoder.batch_bytes(limit) if req.batch or squeeze else 0
                    join_bytes = batch_bytes if req.batch else 0
                    agen = spec.function(tool, request, **kwargs)
                    active = metrics.active  # the node's running requests
                    others_runnable = _others_runnable
                    try:
                        async for item in agen:
                            if type(item) is StreamEnd:
                                final_data = item.data
                                break
                            sequence += 1
                            record.chunks = sequence
                            if type(item) is dict and "delta" in item:
                                delta = item["delta"]
                                if type(delta) is str:
                                    deltas.append(delta)
                            try:
                                data = fast_encode(item)
                            except Exception:
                                data = encode(item)  # the big-int fallback, or the 4008 error
                            # taps reading this codec share these bytes (live.ActiveStream.fan_out)
                            if taps and record.fan_out(sequence, item, codec, data):
                                await trio.sleep(0)  # let a tap that keeps up take its chunks
                            elif not sequence % SLICE_CHUNKS and (len(active) > 1 or others_runnable(writer)):
                                await trio.lowlevel.checkpoint()  # let the node's other requests in
                            size = len(data)
                            if size > batch_bytes:  # alone in its frame (always so without batching)
                                payload = chunk_payload(data, sequence)
                                if len(payload) > limit:
                                    raise answer_too_large(len(payload), limit)
                                if squeeze:
                                    await writer.send(Squeezed(frame(payload)))
                                    continue
                                if not writer.send_nowait(frame(payload)):
                                    await writer.send(frame(payload))
                                continue
                            # batching: join the chunks of this request still waiting for the writer
                            # (per chunk: locals and plain attributes only, no call but the append)
                            if batch is not None and batch.open and joined + size < join_bytes:
                                if writer.pending_bytes >= writer.buffer_bytes or writer.error is not None:
                                    await writer.wait_room()  # StreamGone when the writer failed
                                if batch.open:
                                    join(data)
                                    joined += size + 1
                                    writer.pending_bytes += size + 1  # what it added, counted
                                    continue
                            batch = _Batch(encoder, data, sequence, squeeze)
                            join = batch.items.append
                            joined = batch.nbytes
                            await writer.send(batch)
                    finally:
                        await agen.aclose()  # runs the tool's `finally` now, not at GC
                    metrics.chunks_sent += sequence
                    if final_data is _DEFAULT_FINAL:  # what a TypeScript streaming tool ends with
                        final_data = {"message": "".join(deltas)}
                    answer = final_frame(req, final_data, sequence=sequence + 1, chunks=sequence)
                else:
                    result = await spec.function(tool, request, **kwargs)
                    answer = final_frame(req, result)
            except StreamGone:
                raise
            except OlaneError as exc:
                metrics.errors += 1
                answer = _error_answer(req, exc, streaming, sequence)
            except Exception as exc:  # a tool's own failure
                metrics.errors += 1
                log.debug("tool %s failed", req.method, exc_info=True)
                err = OlaneError(ErrorCode.UNKNOWN, str(exc) or type(exc).__name__, f"{type(exc).__name__}: {exc}")
                answer = _error_answer(req, err, streaming, sequence)
            # compressed like the rest when asked; by the node's default, when large
            await self._terminal(answer, codec, streaming, sequence,
                                 None if not squeeze else 0 if req.compress == "zstd" else self.limits.compress_min_bytes)
        except StreamGone:
            answer = None
        finally:
            if incoming is not None:
                self.inputs.close(req.id, incoming)
            metrics.end(req)
            if record is not None:
                node.streams.end(record, answer)

    def _squeezes(self, req: IncomingRequest) -> bool:
        """Whether this answer goes out compressed (compression.py): asked for, or
        the node's default for a caller that accepts it (streams, and unary
        answers: those are compressed only over Limits.compress_min_bytes, see _send)."""
        if req.compress == "zstd" or (req.compress == "accept" and self.node.compress == "zstd"):
            if self.writer.compressor is None:
                self.writer.compressor = StreamCompressor()
            return True
        return False

    async def _send(self, message: dict, codec: str, squeeze: int | None = None) -> None:
        """Encode and queue one frame; OlaneError 4008 when the message cannot be
        encoded or is larger than a frame may be (nothing is sent then).
        `squeeze`: compressed when its payload has at least this many bytes."""
        payload = codecs.encode(message, codec)
        limit = self.limits.max_frame_bytes
        if len(payload) > limit:
            raise answer_too_large(len(payload), limit)
        if squeeze is not None and len(payload) >= squeeze and self.writer.compressor is not None:
            await self.writer.send(Squeezed(frame(payload)))
            return
        await self.writer.send(frame(payload))

    async def _send_frames(self, frames: bytes, squeeze: bool) -> None:
        """Queue frames already encoded (a relay's, passed on as they came)."""
        await self.writer.send(Squeezed(frames) if squeeze else frames)

    async def _terminal(self, message: dict, codec: str, streaming: bool = False, sequence: int = 0,
                        squeeze: int | None = None) -> None:
        """Send a request's terminal frame. When it cannot be sent as it is (too
        large, not encodable), send an error frame saying so; when not even that
        can be encoded, a bare one without details."""
        try:
            await self._send(message, codec, squeeze)
            return
        except StreamGone:
            return
        except OlaneError as exc:
            self.node.metrics.errors += 1
            req = _request_of(message)
            fallback = _error_answer(req, exc, streaming, sequence)
        try:
            await self._send(fallback, codec)
        except StreamGone:
            pass
        except OlaneError as exc:
            bare = OlaneError(exc.code, exc.message)
            try:
                await self._send(_error_answer(_request_of(message, bare=True), bare, streaming, sequence), codec)
            except OlaneError:
                pass


_DEFAULT_FINAL = object()

#: while other requests run on the node (or other tasks wait to run: requests just
#: read), a streaming tool lets them in every this many chunks: a tool's loop has no
#: schedule point of its own until its stream's write buffer fills (256 KiB, ~2,300
#: chunks of 100 B), and a new stream's negotiation and request each wait for a whole
#: scheduler pass of every such loop. Alone, it never yields (its writer takes bigger
#: batches).
SLICE_CHUNKS = 128


def _others_runnable(writer: FrameWriter) -> bool:
    """Tasks besides this one and its stream's writer wait to run: requests just
    read, not yet started, are in no count of running requests, and a producer
    whose stream's writer can take its whole answer never parks."""
    return trio.lowlevel.current_statistics().tasks_runnable > writer.woken


class _Batch:
    """Chunks of one request waiting in the stream's FrameWriter as one entry
    (a deferred frame): more join while it waits; when the writer takes it,
    `build()` makes one frame of them (a plain chunk frame when alone)."""

    __slots__ = ("encoder", "items", "first", "nbytes", "open", "squeeze")

    def __init__(self, encoder: ChunkEncoder, data: bytes, sequence: int, squeeze: bool = False) -> None:
        self.encoder = encoder
        self.squeeze = squeeze  # goes out in a compressed region (compression.py)
        self.items = [data]
        self.first = sequence
        self.nbytes = len(data) + 64  # the envelope, roughly (what the writer counts it as when queued)
        self.open = True

    def __len__(self) -> int:
        return self.nbytes

    def build(self) -> bytes:
        self.open = False
        items = self.items
        if len(items) == 1:
            return frame(self.encoder.chunk(items[0], self.first))
        return frame(self.encoder.batch(items, self.first))


def _input_for(spec, incoming: Incoming | None, kwargs: dict) -> Incoming:
    """The input a method gets: the caller's, or an ended one when it sends none
    (a TypeScript peer, a plain call); 4011 for input to a method that takes none."""
    if not spec.takes_input:
        raise OlaneError(ErrorCode.INVALID_ACTION, f"{spec.name} takes no input: it is not a bidirectional "
                                                   f"method (call it without input)", {"method": spec.name})
    if incoming is None:
        incoming = Incoming.ended()
    if spec.incoming_param is not None:
        kwargs[spec.incoming_param] = incoming
    return incoming


def safe_id(value: Any, max_bytes: int) -> bool:
    """A request id we may echo: a short string, an integer, or null."""
    if value is None or (type(value) is int and -(2**63) <= value < 2**64):
        return True
    return type(value) is str and len(value) <= max_bytes


def _request_of(message: dict, bare: bool = False) -> IncomingRequest:
    """The request a terminal frame answers, rebuilt from the frame (ids were
    checked when the request was read)."""
    result = message.get("result") or {}
    return IncomingRequest(
        id=message.get("id"), method="" if bare else str(result.get("_requestMethod") or ""), params={},
        envelope=result.get("_requestMethod") == "route",
        connection_id="" if bare else result.get("_connectionId") or "",
    )


def _error_answer(req: IncomingRequest, exc: OlaneError, streaming: bool, sequence: int) -> dict:
    if streaming:
        return error_frame(req, exc, sequence=sequence + 1, chunks=sequence)
    return error_frame(req, exc)
