"""Every limit the runtime enforces, in one place, with the defaults we ship.
What a caller sees when it hits each one is listed in the README ("Limits")."""
from __future__ import annotations

from dataclasses import dataclass

from .codec import DEFAULT_MAX_JSON5_BYTES, DEFAULT_MAX_NESTING
from .framing import DEFAULT_MAX_FRAME_BYTES

#: seconds a write or reset in flight may still take once a node stops
STOP_GRACE = 0.25


@dataclass(frozen=True)
class Limits:
    #: largest frame read or written; a larger incoming frame is refused with 4009 (its stream
    #: reset: framing is lost), a larger answer becomes a 4008 error frame instead
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: deepest nesting of objects and arrays in a request; deeper -> 4009
    max_nesting: int = DEFAULT_MAX_NESTING
    #: a request id (and `_connectionId`) longer than this, or not a string or integer, -> 4009, not echoed
    max_id_bytes: int = 1024
    #: largest frame read as JSON5 (parsed in a worker thread); a larger non-JSON frame -> 4009
    max_json5_bytes: int = DEFAULT_MAX_JSON5_BYTES
    #: bytes all incoming streams together may hold in frames not yet complete; the stream that
    #: would go past it gets 4016 and is reset
    max_buffered_bytes: int = 64 * 1024 * 1024
    #: encoded frames a stream may hold waiting for the wire before the tool waits
    write_buffer_bytes: int = 256 * 1024
    #: requests a node runs at once, over all connections; more -> 4016
    max_active_requests: int = 4096
    #: requests one peer may have running at once; more -> 4016 for that peer only
    max_requests_per_peer: int = 256
    #: streams a client has calls open on at once on one connection (py-libp2p stalls past 256); more
    #: -> 4016. Idle pooled streams (below) hold no slot; the two together stay under 256
    max_streams_per_connection: int = 200
    #: client: streams kept open after a call ended normally, per peer and protocol, for the next
    #: call to reuse (no stream open, no multistream-select); 0: a new stream per call. A call
    #: cancelled, timed out or failed on the wire resets its stream: it is never pooled
    pooled_streams_per_peer: int = 16
    #: client: a pooled stream unused this long is reset, not reused (shorter than the node's
    #: `idle_stream_timeout`, so the caller, not the node, normally ends it)
    pooled_stream_idle_timeout: float = 30.0
    #: node: a stream with no request running and no byte arriving for this long is closed
    #: (a caller's pool then opens a new one; 0: never). Such idle streams keep no connection
    #: busy (`idle_connection_timeout`) and count against no per-peer request limit
    idle_stream_timeout: float = 120.0
    #: a connection with no request running on it, in either direction, for this long is closed (0: never)
    idle_connection_timeout: float = 300.0
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
    #: bidirectional calls: chunks of a caller's input queued for its tool before the node stops
    #: reading that stream (the caller's sends then wait); docs/protocol-extensions.md
    input_queue_chunks: int = 64
    #: ... and bytes of them (queued input also counts toward max_buffered_bytes: past it -> 4016)
    input_queue_bytes: int = 1024 * 1024
    #: a node that compresses by default (Node(compress="zstd")) compresses a unary answer only from
    #: this size (streams always, for callers that accept it)
    compress_min_bytes: int = 16 * 1024
    #: seconds a resumable stream whose caller is gone stays suspended, waiting for a resume; then 4002
    resume_grace: float = 30.0
    #: newest chunks a resumable (or shared) stream keeps for replay; a resume from before them -> 4010.
    #: They must cover what was in flight when the connection died (the writer's buffer and more)
    resume_buffer_chunks: int = 8192
    #: ... and at most this many bytes of them (their data as encoded for the stream's caller)
    resume_buffer_bytes: int = 4 * 1024 * 1024
    #: chunks queued for one tap before it drops (and says so with `_dropped`)
    tap_queue_chunks: int = 1024
    #: newest chunks a plain (not resumable or shared) stream keeps for a tap from "buffer", only
    #: while it has a tap (its tap log keeps them; an untapped stream keeps none)
    tap_buffer_chunks: int = 256
    #: taps one stream may have at once; more -> 4016
    max_taps_per_stream: int = 128
    #: chunks queued for one reader of a resumable or shared stream before the generator waits
    sink_queue_chunks: int = 256
    #: resumable and shared streams a node holds at once (suspended ones count, each up to
    #: resume_buffer_bytes); more -> 4016
    max_live_streams: int = 64
    #: resumable streams one peer has the node hold at once (running, suspended, or ended and
    #: kept for its resume); one more from that peer -> 4016 to it only. So one peer cannot take
    #: every live-stream slot, nor more than this many replay rings of memory
    max_resumable_streams_per_peer: int = 16
    #: characters of a stream's parameters `list_streams` shows
    list_params_chars: int = 200
    #: a relay's stream to the next hop: the most its Yamux receive window may grow to, so a
    #: relayed stream whose caller reads slowly parks at most this much in the relay
    #: (py-libp2p grows windows to 16 MiB for readers that keep up; libp2p_fixes.py fix 3)
    relay_window_bytes: int = 256 * 1024
    #: a relay's reads from the next hop: what it holds of one relayed stream besides that window
    #: and the writer toward its caller (`write_buffer_bytes`)
    relay_read_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.max_streams_per_connection + self.pooled_streams_per_peer > 256:
            raise ValueError("max_streams_per_connection + pooled_streams_per_peer must stay <= 256 "
                             "(py-libp2p stalls opening the 257th stream of a connection)")
