"""Counters a node keeps about itself, answered by the `get_metrics` built-in."""
from __future__ import annotations

import time
from typing import Any

from .messages import IncomingRequest


class NodeMetrics:
    def __init__(self, max_active_requests: int) -> None:
        self.started = time.monotonic()
        self.max_active_requests = max_active_requests
        self.active: dict[int, dict[str, Any]] = {}
        self.requests_total = 0
        self.errors = 0
        self.chunks_sent = 0
        self.active_streams = 0
        self.streams_total = 0

    def begin(self, req: IncomingRequest, peer_id: str | None) -> bool:
        """Count a request in; False when the node is at its limit."""
        if len(self.active) >= self.max_active_requests:
            self.errors += 1
            return False
        self.requests_total += 1
        self.active[id(req)] = {"id": req.id, "method": req.method, "peer": peer_id, "since": time.monotonic()}
        return True

    def end(self, req: IncomingRequest) -> None:
        self.active.pop(id(req), None)

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
            "chunksSent": self.chunks_sent,
            "errorsTotal": self.errors,
        }
