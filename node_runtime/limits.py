"""Every limit the runtime enforces, in one place, with the defaults we ship."""
from __future__ import annotations

from dataclasses import dataclass

from .framing import DEFAULT_MAX_FRAME_BYTES


#: seconds a write or reset in flight may still take once a node stops
STOP_GRACE = 0.25


@dataclass(frozen=True)
class Limits:
    #: largest frame read or written; a larger one is refused with 4009
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: encoded frames a stream may hold waiting for the wire before the tool waits
    write_buffer_bytes: int = 256 * 1024
    #: requests a node runs at once, over all connections; more -> 4016
    max_active_requests: int = 4096
    #: streams a client opens at once on one connection (py-libp2p stalls past 256); more -> 4016
    max_streams_per_connection: int = 200
    #: client: seconds to wait for the first frame of an answer; then 4017
    first_frame_timeout: float = 120.0
    #: client: seconds to wait between two frames of an answer; then 4017
    idle_timeout: float = 120.0
    #: client: seconds to dial a peer; then 4014
    dial_timeout: float = 10.0
    #: seconds one write may wait on a peer that reads nothing; its connection is then closed
    write_timeout: float = 30.0
    #: bytes asked of the stream per read
    read_size: int = 256 * 1024
