"""The streams a node is serving right now, in one registry.

Each incoming libp2p stream is served by one `server.StreamSession`; the
registry knows them all, so that a stopping node can bound the writes still
in flight (a peer that stopped reading would hold them), and it keeps the
node-wide budget of bytes held in frames not yet complete
(`Limits.max_buffered_bytes`): one peer opening many streams, each with most
of a large frame, cannot grow the node without bound. Server-side state
that outlives one stream or is shared between callers belongs here too:
suspended streams kept for resumption, taps copying a stream to watchers.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import orjson
import trio

from .codec import JSON
from .errors import ErrorCode, OlaneError
from .limits import Limits
from .live import ENVELOPE_PARAMS, ERROR, FINAL, ActiveStream, Producer, Sink, Tap

if TYPE_CHECKING:
    from .messages import IncomingRequest
    from .server import StreamSession


class InputBudget:
    """One stream's share of the registry's buffered-bytes budget."""

    def __init__(self, registry: "StreamRegistry") -> None:
        self._registry = registry
        self.held = 0

    def hold(self, n: int) -> bool:
        """This stream now holds `n` bytes of unfinished frames; False when that
        takes the node past its budget (the stream must then let go)."""
        return self._registry.change_held(n - self.held, self, n)


class StreamRegistry:
    def __init__(self, max_buffered_bytes: int = 64 * 1024 * 1024, *, limits: Limits | None = None,
                 admins: Iterable[str] = (), own_peer_id: Callable[[], "str | None"] = lambda: None) -> None:
        self._sessions: set["StreamSession"] = set()
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0  # held by all streams in unfinished frames
        self.limits = limits or Limits()
        #: peer ids that may list and tap every stream (besides each stream's own caller and this node)
        self.admins: set[str] = set(admins)
        self._own_peer_id = own_peer_id
        self.active: dict[str, ActiveStream] = {}  # stream id -> every streaming request running here
        self._shared: dict[tuple, Producer] = {}  # share key -> the producer its joiners read
        self._producers: set[Producer] = set()
        self.nursery = None  # where producers run (set by Node.run); None: no resumable or shared streams

    def __len__(self) -> int:
        return len(self._sessions)

    def peers(self) -> dict[str, int]:
        """peer id -> its streams with a request running (or arriving) now; a
        stream idle between requests (a caller's pooled one) does not count."""
        out: dict[str, int] = {}
        for session in self._sessions:
            if session.peer_id is not None and session.busy:
                out[session.peer_id] = out.get(session.peer_id, 0) + 1
        return out

    @contextmanager
    def serving(self, session: "StreamSession") -> Iterator[InputBudget]:
        """Register `session` while it serves its stream; yields its input budget."""
        budget = InputBudget(self)
        self._sessions.add(session)
        try:
            yield budget
        finally:
            self._sessions.discard(session)
            self.change_held(-budget.held, budget, 0)

    def change_held(self, delta: int, budget: InputBudget, now: int) -> bool:
        if delta > 0 and self.buffered_bytes + delta > self.max_buffered_bytes:
            return False
        self.buffered_bytes += delta
        budget.held = now
        return True

    async def retire_idle(self, timeout: float) -> None:
        """Forever: reset streams nothing has run on for `timeout` seconds (a
        caller's pooled streams it forgot; callers retire theirs sooner)."""
        every = max(0.05, min(30.0, timeout / 4))
        while True:
            await trio.sleep(every)
            for session in list(self._sessions):
                await session.retire_if_idle(timeout)

    def stop_soon(self, grace: float) -> None:
        """The node is stopping: give every write in flight at most `grace` seconds."""
        for session in list(self._sessions):
            session.writer.stop_soon(grace)

    # -- live streams (node_runtime/live.py; docs/protocol-extensions.md) ---------------

    def begin(self, req: "IncomingRequest", peer_id: str | None, address: str) -> ActiveStream:
        """Record a streaming request while it runs (every one, so list_streams sees all)."""
        record = ActiveStream(req, peer_id, address)
        self.active[record.stream_id] = record
        return record

    def end(self, record: ActiveStream, answer: "dict | None") -> None:
        """The request is over; `answer` is its terminal frame (None: its caller is gone)."""
        self.active.pop(record.stream_id, None)
        if record.taps:
            result = (answer or {}).get("result") or {}
            if answer is None:
                record.end_taps(ERROR, OlaneError(ErrorCode.SEND_FAILED, "the stream's caller is gone"))
            elif result.get("success") is False:
                record.end_taps(ERROR, OlaneError.from_wire(result.get("error")))
            else:
                record.end_taps(FINAL, result.get("data"))

    def record_of(self, request_id: Any) -> "ActiveStream | None":
        """The running stream of a request (a tool may look at its own, e.g. its taps)."""
        return next((r for r in list(self.active.values()) if r.request_id == request_id), None)

    def may_watch(self, peer_id: str | None, record: ActiveStream) -> bool:
        """The stream's own caller, this node itself, and the admins."""
        return peer_id is not None and (peer_id == record.peer_id or peer_id in self.admins
                                        or peer_id == self._own_peer_id())

    def find(self, stream_id: Any) -> ActiveStream:
        record = self.active.get(stream_id) if type(stream_id) is str else None
        if record is None:
            raise OlaneError(ErrorCode.NOT_FOUND, f"no stream {stream_id!r} here (ended, expired or never started)",
                             {"streamId": stream_id})
        return record

    def listing(self, peer_id: str | None) -> list[dict[str, Any]]:
        """The streams `peer_id` may see: all for an admin, else its own."""
        chars = self.limits.list_params_chars
        return [r.describe(chars) for r in list(self.active.values()) if self.may_watch(peer_id, r)]

    def tap(self, peer_id: str | None, stream_id: Any, start: str = "now") -> Tap:
        record = self.find(stream_id)
        if not self.may_watch(peer_id, record):
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, "only the stream's caller and the node's admins may tap it",
                             {"streamId": stream_id})
        limits = self.limits
        if len(record.taps) >= limits.max_taps_per_stream:
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"stream {stream_id} has {len(record.taps)} taps, the limit",
                             {"limit": limits.max_taps_per_stream})
        sink = Tap(record, limits.tap_queue_chunks, peer_id)
        producer = record.producer
        if start == "buffer":
            if producer is not None:  # resumable and shared streams keep a ring
                sink.preload(list(producer.ring)[-limits.tap_queue_chunks:])
            elif record.taps:  # a plain stream keeps its newest chunks only while it has a tap
                sink.cursor = record.buffered_from(min(limits.tap_buffer_chunks, limits.tap_queue_chunks))
        if producer is not None and producer.over:  # ended, kept for its caller's resume
            sink.finish(*producer.outcome, record.chunks)
            return sink
        record.add_tap(sink, keep=limits.tap_buffer_chunks if producer is None else 0)
        return sink

    def resume(self, peer_id: str | None, stream_id: Any, after: int) -> Sink:
        if type(after) is not int or after < 0:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, "after must be a whole number, the last sequence received",
                             {"parameter": "after"})
        record = self.find(stream_id)
        producer = record.producer
        if producer is None or not record.resumable:
            raise OlaneError(ErrorCode.NOT_FOUND, f"stream {stream_id} is not resumable", {"streamId": stream_id})
        if peer_id is None or peer_id != record.peer_id:
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, "only the peer that started a stream may resume it",
                             {"streamId": stream_id})
        sink = Sink(record, self.limits.sink_queue_chunks, kind="resume", peer_id=peer_id)
        for old in list(producer.sinks):  # its old stream may not have noticed the loss yet
            producer.detach(old)
        producer.attach(sink, after)  # 4010 when `after` is older than the ring
        return sink

    def stop(self, peer_id: str | None, stream_id: Any) -> dict[str, Any]:
        """End a resumable stream now (its caller gave up on it, or an admin)."""
        record = self.find(stream_id)
        if not self.may_watch(peer_id, record):
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, "only the stream's caller and the node's admins may stop it",
                             {"streamId": stream_id})
        if record.producer is None or not record.resumable:
            raise OlaneError(ErrorCode.INVALID_STATE, "only a resumable stream is stopped this way (others stop "
                                                      "when their callers reset them)", {"streamId": stream_id})
        record.producer.stop()
        return {"stopped": stream_id, "chunks": record.chunks}

    def produce(self, req: "IncomingRequest", peer_id: str | None, address: str, start: Callable[[], Any],
                codec: str = JSON) -> Sink:
        """A resumable or shared request: join the running producer of its share key,
        or start one (`start()` makes the tool's async generator; `codec`: the caller's,
        in which it encodes each chunk once)."""
        limits = self.limits
        if self.nursery is None:
            raise OlaneError(ErrorCode.NOT_CONFIGURED, "this node runs no resumable or shared streams")
        if req.resumable and req.share is not None:
            raise OlaneError(ErrorCode.INVALID_REQUEST, "a stream is either resumable or shared, not both")
        key = None
        if req.share is not None:
            params = {k: v for k, v in req.params.items() if k not in ENVELOPE_PARAMS}
            try:
                key = (address, req.method, orjson.dumps(params, option=orjson.OPT_SORT_KEYS), req.share)
            except TypeError:
                raise OlaneError(ErrorCode.INVALID_PARAMETERS, "parameters of a shared stream must be JSON") from None
            producer = self._shared.get(key)
            if producer is not None and not producer.over:
                sink = Sink(producer.record, limits.sink_queue_chunks, kind="join", peer_id=peer_id,
                            offset=producer.sequence)
                producer.attach(sink)
                return sink
        if len(self._producers) >= limits.max_live_streams:
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"node runs {len(self._producers)} resumable or shared streams, the limit",
                             {"limit": limits.max_live_streams})
        if req.resumable:
            held = sum(1 for p in self._producers if p.record.resumable and p.record.peer_id == peer_id)
            if held >= limits.max_resumable_streams_per_peer:
                raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                                 f"this peer has {held} resumable streams held here (running or suspended), "
                                 f"the limit per peer; stop one (stop_stream) or let a suspended one expire",
                                 {"limit": limits.max_resumable_streams_per_peer})
        record = self.begin(req, peer_id, address)
        record.resumable = req.resumable
        record.share = req.share
        producer = Producer(record, start(), limits, self._producer_done, codec)
        if key is not None:
            self._shared[key] = producer
        record.producer = producer
        self._producers.add(producer)
        sink = Sink(record, limits.sink_queue_chunks, kind="caller", peer_id=peer_id)
        producer.attach(sink)
        self.nursery.start_soon(producer.run)
        return sink

    def _producer_done(self, producer: Producer) -> None:
        for key, p in list(self._shared.items()):
            if p is producer:
                del self._shared[key]  # a new caller with this key starts a new one
        if not producer.sinks:
            self._settle(producer)

    def _settle(self, producer: Producer) -> None:
        """An ended stream with no reader left: forget it, unless its caller was away
        at the end (the last chunks and the end may not have reached it): then keep
        it for a resume, for the grace."""
        if producer.record.resumable and not producer.delivered and not producer.stopped \
                and self.nursery is not None:
            if not producer.kept:
                producer.kept = True
                self.nursery.start_soon(self._forget_later, producer)
        else:
            self._forget(producer)

    async def _forget_later(self, producer: Producer) -> None:
        await trio.sleep(self.limits.resume_grace)
        self._forget(producer)

    def _forget(self, producer: Producer) -> None:
        self._producers.discard(producer)
        if self.active.get(producer.record.stream_id) is producer.record:
            del self.active[producer.record.stream_id]

    def delivered(self, sink: "Sink | Tap") -> None:
        """A reader of a live stream got its final frame."""
        producer = sink.record.producer
        if producer is not None and producer.over and sink.kind != "tap":
            producer.delivered = True

    def leave(self, sink: "Sink | Tap") -> None:
        """A sink's reader is done (its frames all sent, or its stream gone)."""
        record = sink.record
        if sink.kind == "tap":
            sink.detach()
            record.remove_tap(sink)
        elif record.producer is not None:
            producer = record.producer
            producer.detach(sink)
            if producer.over and not producer.sinks:
                self._settle(producer)
