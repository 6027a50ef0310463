"""Counters a node keeps about itself, answered by the `get_metrics` built-in."""
from __future__ import annotations

import time
from typing import Any

from .errors import ErrorCode, OlaneError
from .messages import IncomingRequest


class NodeMetrics:
    def __init__(self, max_active_requests: int, max_requests_per_peer: int | None = None) -> None:
        self.started = time.monotonic()
        self.max_active_requests = max_active_requests
        self.max_requests_per_peer = max_requests_per_peer or max_active_requests
        self.active: dict[int, dict[str, Any]] = {}
        self.per_peer: dict[str | None, int] = {}
        self.requests_total = 0
        self.errors = 0
        self.chunks_sent = 0
        self.active_streams = 0
        self.streams_total = 0
        self.idle_streams_closed = 0  # streams reset for idling past Limits.idle_stream_timeout

    def begin(self, req: IncomingRequest, peer_id: str | None) -> None:
        """Count a request in; OlaneError 4016 when the node, or this peer, is at its limit."""
        if len(self.active) >= self.max_active_requests:
            self.errors += 1
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"node is at its limit of {self.max_active_requests} active requests")
        mine = self.per_peer.get(peer_id, 0)
        if mine >= self.max_requests_per_peer:
            self.errors += 1
            raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                             f"this peer has {mine} requests running, the limit per peer "
                             f"({self.max_requests_per_peer}); wait for some to end",
                             {"limit": self.max_requests_per_peer})
        self.per_peer[peer_id] = mine + 1
        self.requests_total += 1
        self.active[id(req)] = {"id": req.id, "method": req.method, "peer": peer_id, "since": time.monotonic()}

    def end(self, req: IncomingRequest) -> None:
        entry = self.active.pop(id(req), None)
        if entry is not None:
            left = self.per_peer.get(entry["peer"], 1) - 1
            if left > 0:
                self.per_peer[entry["peer"]] = left
            else:
                self.per_peer.pop(entry["peer"], None)

    def streams_opened(self) -> None:
        self.active_streams += 1
        self.streams_total += 1

    def streams_closed(self) -> None:
        self.active_streams -= 1

    def snapshot(self, exclude_request: Any = None) -> dict[str, Any]:
        now = time.monotonic()
        active = [
            {"id": a["id"], "method": a["method"], "peer": a["peer"], "seconds": round(now - a["since"], 3)}
            for a in self.active.values()
            if exclude_request is None or a["id"] != exclude_request
        ]
        return {
            "uptimeSeconds": round(now - self.started, 3),
            "activeRequests": len(active),
            "activeStreams": self.active_streams,  # includes the stream this answer travels on
            "requests": active,
            "requestsTotal": self.requests_total,
            "streamsTotal": self.streams_total,
            "idleStreamsClosed": self.idle_streams_closed,
            "chunksSent": self.chunks_sent,
            "errorsTotal": self.errors,
        }
