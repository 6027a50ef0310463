"""The streams a node is serving right now, in one registry.

Each incoming libp2p stream is served by one `server.StreamSession`; the
registry knows them all, so that a stopping node can bound the writes still
in flight (a peer that stopped reading would hold them). Server-side state
that outlives one stream or is shared between callers belongs here too:
suspended streams kept for resumption, taps copying a stream to watchers.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .server import StreamSession


class StreamRegistry:
    def __init__(self) -> None:
        self._sessions: set["StreamSession"] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    @contextmanager
    def serving(self, session: "StreamSession") -> Iterator[None]:
        """Register `session` while it serves its stream."""
        self._sessions.add(session)
        try:
            yield
        finally:
            self._sessions.discard(session)

    def stop_soon(self, grace: float) -> None:
        """The node is stopping: give every write in flight at most `grace` seconds."""
        for session in list(self._sessions):
            session.writer.stop_soon(grace)
