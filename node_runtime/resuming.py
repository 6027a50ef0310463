"""A streaming call that survives its connection (docs/protocol-extensions.md,
"Live streams"): asked as resumable, it learns the stream's id from the first
chunk; when the stream or connection is lost before the final frame, it
reconnects (backing off, within `resume_within` seconds) and asks the node to
`resume` after the last sequence it got, so `async for` sees every chunk once.
Also where a caller asks to join a shared stream."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

import trio

from .client import StreamingCall
from .errors import ErrorCode, OlaneError
from .messages import Response

if TYPE_CHECKING:
    from .node import Node

#: failures that mean the connection (not the stream's tool) is gone: worth a resume
_LOST = (ErrorCode.RECEIVE_FAILED, ErrorCode.SEND_FAILED, ErrorCode.FAILED_TO_DIAL_TARGET)
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0


class LiveCall(StreamingCall):
    """A StreamingCall that asks the peer for a live-stream extension (`feature`,
    one of what its `identify` lists under `streams`). It learns the peer's
    extensions as any call does (identify, once per peer and protocol, kept in
    `peers.features`), also with a chosen codec, and refuses with 4001 before
    sending anything when they do not list it: a node that does not (a
    TypeScript one) never sees the flag."""

    feature = "resume"

    def needs_features(self) -> bool:
        return True

    def use_features(self, features: "frozenset[str] | None") -> None:
        if features is None or self.feature not in features:
            raise OlaneError(ErrorCode.NOT_IMPLEMENTED,
                             f"the node serving {self.address} does not offer {self.feature} streams",
                             {"feature": self.feature})
        super().use_features(features)


class ResumableCall:
    """Iterate it like a StreamingCall (`async for chunk in call`, or
    `responses()`). `stream_id` is known once the first chunk came; `resumes`
    counts the resumes it made; `resumed_at` lists the sequence after which
    each resume went on."""

    def __init__(self, node: "Node", address, method: str, params: dict[str, Any] | None, *, via: str | None,
                 protocol: str | None, codec: str | None, first_frame_timeout: float | None,
                 idle_timeout: float | None, timeout: float | None, resume_within: float = 30.0,
                 stream_id: str | None = None, after: int = 0) -> None:
        self.node = node
        self.address = address
        self.method = method
        self.params = dict(params or {})
        self.via = via
        self.protocol = protocol
        self._options = dict(codec=codec, first_frame_timeout=first_frame_timeout, idle_timeout=idle_timeout,
                             timeout=timeout)
        self.resume_within = resume_within
        self.stream_id = stream_id  # given: resume that stream (olane stream --resume) instead of starting one
        self.last = after  # the last sequence handed out
        self.resumes = 0
        self.resumed_at: list[int] = []
        self.chunks = 0
        self.final: Any = None
        self.final_response: Response | None = None
        self.error: OlaneError | None = None
        self.call: StreamingCall | None = None  # the call being read now
        self._stopped = False
        self.started_at: float | None = None  # when the first request was written (time.monotonic())

    def _new_call(self) -> StreamingCall:
        if self.stream_id is None:
            call = LiveCall(self.node, self.address, self.method, self.params, via=self.via,
                            protocol=self.protocol, **self._options)
            call.resumable = True
        else:
            call = LiveCall(self.node, self.address, "resume", {"streamId": self.stream_id, "after": self.last},
                            via=self.via, protocol=self.protocol, **self._options)
        self.call = call
        return call

    async def start(self) -> None:
        """Send the request (the feature check first: LiveCall); iterating starts it too."""
        if self.call is None:
            self._new_call()
        await self.call.start()
        if self.started_at is None:
            self.started_at = self.call.started_at

    @property
    def wire_codec(self) -> str | None:
        return self.call.wire_codec if self.call is not None else None

    @property
    def frames_after_final(self) -> int:
        return self.call.frames_after_final if self.call is not None else 0

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._data()

    async def _data(self) -> AsyncIterator[Any]:
        async for response in self.responses():
            if not response.last:
                yield response.data

    def abort_connection(self) -> bool:
        """Kill the connection the stream is read on now (see StreamingCall.abort_connection)."""
        return self.call is not None and self.call.abort_connection()

    async def aclose(self) -> None:
        if self.call is not None:
            await self.call.aclose()
        await self._stop_if_left()

    async def _stop_if_left(self) -> None:
        """The caller left before the end (break, cancel): tell the node to end the
        stream rather than keep it suspended for a resume that will not come."""
        if self.final_response is not None or self.error is not None or self.stream_id is None or self._stopped:
            return
        self._stopped = True
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await self.node.use(self.address, "stop_stream", {"streamId": self.stream_id}, via=self.via,
                                    protocol=self.protocol, timeout=2)
            except OlaneError:
                pass

    async def responses(self) -> AsyncIterator[Response]:
        await self.start()
        call = self.call
        try:
            while True:
                try:
                    async for response in call.responses():
                        if response.last:
                            self.final, self.final_response = response.data, response
                            yield response
                            return
                        if self.stream_id is None:
                            self.stream_id = response.extra("_streamId")
                        seq = response.sequence
                        if type(seq) is int:
                            if seq <= self.last:
                                continue  # replayed, already handed out: each sequence once
                            self.last = seq
                        self.chunks += 1
                        yield response
                    return
                except OlaneError as exc:
                    if exc.code not in _LOST or self.stream_id is None:
                        self.error = exc
                        raise
                    call = await self._resume(exc)
        finally:
            await call.aclose()
            await self._stop_if_left()

    async def _resume(self, lost: OlaneError) -> StreamingCall:
        """Ask to resume until the node answers, backing off, for at most `resume_within` s."""
        delay = BACKOFF_FIRST
        deadline = trio.current_time() + self.resume_within
        while True:
            call = self._new_call()
            try:
                with trio.move_on_at(deadline):
                    await call.start()
                    self.resumes += 1
                    self.resumed_at.append(self.last)
                    return call
            except OlaneError as exc:
                await call.aclose()
                if exc.code not in _LOST:
                    self.error = exc
                    raise
                if "refused" in exc.message.lower():
                    # nothing listens there any more: the node is gone, and its suspended streams with it
                    self.error = lost
                    raise lost from None
            if trio.current_time() + delay >= deadline:
                self.error = OlaneError(ErrorCode.RECEIVE_FAILED,
                                        f"lost the stream and could not resume it within {self.resume_within:g} s: "
                                        f"{lost.message}", {"streamId": self.stream_id, "after": self.last})
                raise self.error
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


class SharedCall(LiveCall):
    """A StreamingCall that joins (or starts) the shared stream of its `share` key."""

    feature = "share"
