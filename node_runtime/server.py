"""Serving one incoming libp2p stream: read request frames, run each request as
its own task, answer on the same stream (several requests may share a stream,
matched by id), exactly one terminal frame per request."""
from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from . import codec as codecs
from .errors import ErrorCode, OlaneError
from .framing import FrameDecoder, FrameTooLarge, frame
from .messages import IncomingRequest, chunk_frame, error_frame, final_frame, parse_request, unreadable_frame_error
from .stream_io import STREAM_ENDED, FrameWriter, StreamGone, close_quietly, reset_quietly
from .limits import STOP_GRACE
from .tools import Request, StreamEnd

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("olane.server")

class StreamSession:
    """All requests that arrive on one stream."""

    def __init__(self, node: "Node", stream, protocol: str) -> None:
        self.node = node
        self.stream = stream
        self.protocol = protocol
        self.limits = node.limits
        self.writer = FrameWriter(stream, self.limits.write_buffer_bytes, self.limits.write_timeout)
        self.peer_id = node.peers.peer_of(stream)

    async def serve(self) -> None:
        metrics = self.node.metrics
        metrics.streams_opened()
        reset = False
        try:
            with self.node.streams.serving(self):
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
        decoder = FrameDecoder(self.limits.max_frame_bytes)
        stream = self.stream
        read_size = self.limits.read_size
        while True:
            try:
                data = await stream.read(read_size)
            except STREAM_ENDED:
                # EOF or reset: a client never half-closes before its final frame,
                # so whatever is still running has lost its caller.
                return bool(requests.child_tasks)
            if not data:
                return bool(requests.child_tasks)
            try:
                payloads = decoder.feed(data)
            except FrameTooLarge as exc:
                await self._send_unreadable(exc)
                return True  # framing is lost: nothing after this can be read
            except OlaneError as exc:
                await self._send_unreadable(exc)
                return True
            for payload in payloads:
                message = None
                try:
                    message, codec = codecs.decode(payload)
                    req = parse_request(message)
                except OlaneError as exc:
                    await self._send_unreadable(exc, message.get("id") if isinstance(message, dict) else None)
                    continue
                requests.start_soon(self._run_request, req, codec)

    async def _send_unreadable(self, exc: OlaneError, req_id: Any = None) -> None:
        self.node.metrics.errors += 1
        try:
            await self.writer.send(frame(codecs.encode(unreadable_frame_error(exc, req_id))))
            with trio.move_on_after(2):
                await self.writer.drain()
        except StreamGone:
            pass

    async def _run_request(self, req: IncomingRequest, codec: str) -> None:
        node = self.node
        metrics = node.metrics
        send = self.writer.send
        encode = codecs.encode
        streaming = False
        sequence = 0
        if not metrics.begin(req, self.peer_id):
            await self._terminal(
                error_frame(req, OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                                            f"node is at its limit of {self.limits.max_active_requests} active requests")),
                codec,
            )
            return
        try:
            try:
                tool = node.router.local(req, self.protocol)
                if tool is None:  # an address not served here: relay it onward
                    await node.router.forward(req, partial(self._reply, codec=codec))
                    return
                spec = tool.resolve(req.method)
                kwargs = spec.bind(req.params)
                request = Request(
                    id=req.id, method=req.method, params=req.params, caller_address=req.caller_address,
                    connection_id=req.connection_id, peer_id=self.peer_id, node=node,
                )
                if spec.streaming:
                    streaming = True
                    final_data: Any = _DEFAULT_FINAL
                    deltas: list[str] = []
                    agen = spec.function(tool, request, **kwargs)
                    try:
                        async for item in agen:
                            if type(item) is StreamEnd:
                                final_data = item.data
                                break
                            sequence += 1
                            if type(item) is dict:
                                delta = item.get("delta")
                                if type(delta) is str:
                                    deltas.append(delta)
                            await send(frame(encode(chunk_frame(req, item, sequence), codec)))
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
            await self._terminal(answer, codec)
        except StreamGone:
            pass  # the caller is gone: nobody to answer
        finally:
            metrics.end(req)

    async def _reply(self, message: dict, codec: str) -> None:
        """Send one frame of an answer (for the router relaying another node's)."""
        await self.writer.send(frame(codecs.encode(message, codec)))

    async def _terminal(self, message: dict, codec: str) -> None:
        try:
            await self.writer.send(frame(codecs.encode(message, codec)))
        except StreamGone:
            pass


_DEFAULT_FINAL = object()


def _error_answer(req: IncomingRequest, exc: OlaneError, streaming: bool, sequence: int) -> dict:
    if streaming:
        return error_frame(req, exc, sequence=sequence + 1, chunks=sequence)
    return error_frame(req, exc)
