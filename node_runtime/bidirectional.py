"""Bidirectional calls, the caller's side: send input chunks on the stream of a
call while reading its answer (docs/protocol-extensions.md, "Input chunks").

    async with node.open_bidirectional(address, "echo_stream", {}, via=ma) as call:
        await call.send({"n": 1})
        await call.end()
        async for chunk in call:
            ...

Sending and reading share the stream and both are bounded: `send` waits while
the bytes not yet written reach `Limits.write_buffer_bytes` (they are written
only as the node's Yamux window allows, and the node reads the stream only as
its tool takes input), and the answer is read only as it is iterated. So a
long exchange with a tool that answers as it reads (echo) must send from one
task and read from another, as with any flow-controlled duplex stream.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

import trio

from . import codec as codecs
from .client import StreamingCall
from .errors import ErrorCode, OlaneError
from .framing import frame
from .incoming import input_end, input_frame
from .messages import INPUT_FLAG
from .peers import sole_exception
from .stream_io import FrameWriter, StreamGone

if TYPE_CHECKING:
    from .node import Node


class BidirectionalCall(StreamingCall):
    """A streaming call that also sends: `send(value)` per input chunk, then `end()`."""

    def __init__(self, node: "Node", address, method: str, params: dict[str, Any] | None, **kwargs: Any) -> None:
        for name in ("via", "first_frame_timeout", "idle_timeout", "codec"):
            kwargs.setdefault(name, None)
        super().__init__(node, address, method, params, streaming=True, **kwargs)
        self._extra[INPUT_FLAG] = True
        self.sent = 0  # input chunks sent
        self.ended = False  # end() was called
        self._writer: FrameWriter | None = None

    def needs_features(self) -> bool:
        return True

    def use_features(self, features: "frozenset[str] | None") -> None:
        if features is None or "input" not in features:
            raise OlaneError(ErrorCode.NOT_IMPLEMENTED,
                             f"the node serving {self.address} takes no input on a call: its identify lists no "
                             f"\"input\" (a TypeScript olane node, or an older one of ours)",
                             {"method": self.method})
        super().use_features(features)

    def stream_reusable(self) -> bool:
        """Never: input may still be on its way, and the writer is this call's."""
        return False

    async def start(self) -> None:
        await super().start()
        if self._writer is None and self._stream is not None:
            limits = self.node.limits
            self._writer = FrameWriter(self._stream, limits.write_buffer_bytes, limits.write_timeout)

    @property
    def writer(self) -> FrameWriter | None:
        return self._writer

    def _closed_error(self) -> OlaneError:
        if self.error is not None and not self.cancelled:
            return self.error
        return OlaneError(ErrorCode.INVALID_STATE, "the call has ended: nothing more can be sent",
                          {"sent": self.sent})

    async def send(self, data: Any) -> None:
        """Send one input chunk; waits while the unwritten input is at its bound."""
        if self.ended:
            raise OlaneError(ErrorCode.INVALID_STATE, "input already ended (end() was called)")
        writer = self._writer
        if writer is None:
            raise OlaneError(ErrorCode.INVALID_STATE, "the call has not started (use `async with`)")
        if self.done:
            raise self._closed_error()
        self.sent += 1
        payload = codecs.encode(input_frame(self.id, data, self.sent), self.wire_codec or codecs.JSON)
        await self._push(frame(payload))

    async def end(self) -> None:
        """Send the end of the input (idempotent)."""
        if self.ended or self._writer is None or self.done:
            self.ended = True
            return
        self.ended = True
        await self._push(frame(codecs.encode(input_end(self.id, self.sent), self.wire_codec or codecs.JSON)))

    async def _push(self, data: bytes) -> None:
        writer = self._writer
        if not writer.send_nowait(data):
            try:
                await writer.send(data)
            except StreamGone:
                raise self._closed_error() from None
        # time spent sending is not time the answer is late: the wait for its next frame starts now
        self.restart_frame_wait()


@asynccontextmanager
async def open_bidirectional(node: "Node", address, method: str, params: dict[str, Any] | None = None,
                             **kwargs: Any) -> AsyncIterator[BidirectionalCall]:
    """Start a bidirectional call; on leaving, a call whose final frame has not come is cancelled."""
    call = BidirectionalCall(node, address, method, params, **kwargs)
    try:
        async with trio.open_nursery() as nursery:
            try:
                await call.start()
                nursery.start_soon(call.writer.run)
                yield call
            finally:
                with trio.CancelScope(shield=True):
                    await call.aclose()
                if call.writer is not None:
                    call.writer.close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the body's own exception, not trio's wrapping of it
        sole = sole_exception(group)
        if sole is None:
            raise
        raise sole.with_traceback(sole.__traceback__) from None
