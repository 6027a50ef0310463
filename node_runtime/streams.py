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
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
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
    def __init__(self, max_buffered_bytes: int = 64 * 1024 * 1024) -> None:
        self._sessions: set["StreamSession"] = set()
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered_bytes = 0  # held by all streams in unfinished frames

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
        import trio

        every = max(0.05, min(30.0, timeout / 4))
        while True:
            await trio.sleep(every)
            for session in list(self._sessions):
                await session.retire_if_idle(timeout)

    def stop_soon(self, grace: float) -> None:
        """The node is stopping: give every write in flight at most `grace` seconds."""
        for session in list(self._sessions):
            session.writer.stop_soon(grace)
