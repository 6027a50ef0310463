"""Bidirectional calls, the node's side: the chunks a caller sends on the stream
of a request it made (docs/protocol-extensions.md, "Input chunks").

A caller of ours that asked with `_input: true` in its envelope sends, on the
same stream, input frames for that request id, each with its own `_sequence`,
then one end frame. The stream's reader (server.StreamSession) hands each to
`Inputs.deliver`, which puts it in that request's bounded `Incoming` queue; the
tool takes them with `async for chunk in incoming`.

Backpressure: when a request's queue is full, `deliver` waits, so the stream's
reader stops reading the stream: the Yamux window fills and the caller's writes
wait. Other requests sharing that stream wait for their own input meanwhile
(their answers still flow: writing is separate); our client opens one stream
per call, so only a peer that multiplexes bidirectional calls on one stream
sees that, and it chose to. Queued input also counts toward the node-wide
`Limits.max_buffered_bytes`; the request that would go past it ends with 4016
(its input is dropped), nobody else is touched.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import trio

from .errors import ErrorCode, OlaneError

if TYPE_CHECKING:
    from .limits import Limits

#: the `method` of an input frame (never a tool method: those cannot start with "_")
INPUT_METHOD = "_input"
#: while a full queue holds the stream's reader, it looks this often whether the caller left
GONE_POLL = 0.2


class CallerGone(Exception):
    """The caller reset or closed the stream while its reader waited on a full queue."""


def input_frame(request_id: Any, data: Any, sequence: int) -> dict[str, Any]:
    """One chunk a caller sends for its request `request_id`."""
    return {"jsonrpc": "2.0", "id": request_id, "method": INPUT_METHOD,
            "params": {"data": data, "_sequence": sequence}}


def input_end(request_id: Any, chunks: int) -> dict[str, Any]:
    """The caller sends nothing more for `request_id` (after `chunks` chunks)."""
    return {"jsonrpc": "2.0", "id": request_id, "method": INPUT_METHOD,
            "params": {"_last": True, "_sequence": chunks + 1, "_chunks": chunks}}


class Incoming:
    """What a tool method iterates: the caller's chunks, in order, until its end.
    An input that broke the rules (out of order, over the node's budget) raises
    OlaneError from the iteration."""

    def __init__(self, max_chunks: int = 64, max_bytes: int = 1 << 20, budget=None) -> None:
        self.max_chunks = max_chunks
        self.max_bytes = max_bytes
        self._budget = budget  # streams.InputBudget: this queue's share of the node-wide bytes
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._ended = False
        self._error: OlaneError | None = None
        self._data = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self.closed = False  # the request is over: anything more is dropped
        self.arrived = 0  # chunks read off the stream
        self.received = 0  # chunks the tool took

    @classmethod
    def ended(cls) -> "Incoming":
        """No input (a caller that did not ask to send any: a TypeScript peer, a plain call)."""
        incoming = cls()
        incoming.end(0)
        return incoming

    @property
    def queued(self) -> int:
        return len(self._items)

    def __aiter__(self) -> "Incoming":
        return self

    async def __anext__(self) -> Any:
        items = self._items
        while not items:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            await self._data.park()
        data, size = items.popleft()
        self._bytes -= size
        self.received += 1
        if self._budget is not None:
            self._budget.hold(self._bytes)
        if len(self._room):
            self._room.unpark_all()
        return data

    # -- the stream reader's side ---------------------------------------------------

    async def put(self, data: Any, size: int, sequence: Any, gone: "Callable[[], bool] | None" = None) -> None:
        """Queue one chunk; waits while the queue is full (the stream is not read
        meanwhile; CallerGone when `gone()` says the caller left during the wait)."""
        if self._ended or self.closed:
            return
        if sequence != self.arrived + 1:
            self.fail(OlaneError(ErrorCode.INVALID_REQUEST, f"input chunk {sequence!r} came where "
                                                            f"{self.arrived + 1} was due"))
            return
        while (len(self._items) >= self.max_chunks or self._bytes >= self.max_bytes) and not self.closed:
            with trio.move_on_after(GONE_POLL):
                await self._room.park()
            if gone is not None and gone():
                raise CallerGone()
        if self.closed:
            return
        if self._budget is not None and not self._budget.hold(self._bytes + size):
            self.fail(OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                                 "the node holds too much unread input; this call's input is dropped"))
            return
        self.arrived += 1
        self._items.append((data, size))
        self._bytes += size
        if len(self._data):
            self._data.unpark_all()

    def end(self, chunks: Any) -> None:
        if self._ended or self.closed:
            return
        if chunks != self.arrived:
            self.fail(OlaneError(ErrorCode.INVALID_REQUEST, f"input ended after {self.arrived} chunks, "
                                                            f"its end frame says {chunks!r}"))
            return
        self._ended = True
        self._data.unpark_all()

    def fail(self, error: OlaneError) -> None:
        if self._error is None and not self._ended:
            self._error = error
            self._ended = True
        self._items.clear()
        self._bytes = 0
        if self._budget is not None:
            self._budget.hold(0)
        self._data.unpark_all()

    def close(self) -> None:
        """The request is over: drop what is queued and anything still coming; wake the reader."""
        self.closed = True
        self._items.clear()
        self._bytes = 0
        if self._budget is not None:
            self._budget.hold(0)
        self._room.unpark_all()
        self._data.unpark_all()


class Inputs:
    """The input queues of the requests running on one stream, by request id."""

    def __init__(self, limits: "Limits", budget: "Callable[[], Any] | None" = None,
                 gone: "Callable[[], bool] | None" = None) -> None:
        self._limits = limits
        self._budget = budget  # makes a queue's share of the node-wide bytes (streams.InputBudget)
        self._gone = gone  # whether the stream's caller left (stream_io.peer_gone)
        self._open: dict[Any, Incoming] = {}
        self.dropped = 0  # input frames for no open request (ended, or never asked)

    def open(self, request_id: Any) -> Incoming:
        """Called by the reader as it reads a request that asked to send input,
        before the next frame is read (its first chunk may be in the same read)."""
        budget = self._budget() if self._budget is not None else None
        incoming = Incoming(self._limits.input_queue_chunks, self._limits.input_queue_bytes, budget)
        old = self._open.get(request_id)
        if old is not None:  # a second request with a running one's id: the first keeps it
            incoming.fail(OlaneError(ErrorCode.INVALID_REQUEST, "a request with this id is already open"))
            return incoming
        self._open[request_id] = incoming
        return incoming

    def close(self, request_id: Any, incoming: Incoming) -> None:
        if self._open.get(request_id) is incoming:
            del self._open[request_id]
        incoming.close()

    async def deliver(self, message: dict[str, Any], size: int) -> None:
        """One input frame from the stream (already decoded)."""
        rid = message.get("id")
        # an id that no request could have (a list, a map: unhashable) matches nothing
        incoming = self._open.get(rid) if type(rid) in (str, int) else None
        params = message.get("params")
        if incoming is None or type(params) is not dict:
            self.dropped += 1
            return
        if params.get("_last") is True:
            incoming.end(params.get("_chunks"))
        else:
            await incoming.put(params.get("data"), size, params.get("_sequence"), self._gone)
