"""Narrow fixes of py-libp2p 0.8.1 behaviour, applied to one host's swarm.

This is the one module that touches py-libp2p's private parts; each fix says
why, and tests/test_connections.py pins both the behaviour it corrects (so a
py-libp2p that changes it fails a test and the fix can go) and the fix.

1. Inbound connection slots are never given back (LIBP2P-NOTES.md 9).
   `Swarm._handle_inbound_connection` takes a slot of `_inbound_limiter`
   (max_connections - min_connections = 250 by default) and releases it when
   `_do_handle_inbound_connection` returns, but that only returns when the
   whole swarm stops (`await self.manager.wait_finished()`, "intentional
   barrier"). Each closed connection keeps its slot and its handler task, so
   the 251st caller is refused until restart. The fix runs the original
   handler but ends it as soon as the connection it upgraded has closed.
2. Peers not allowed (an allowlist of peer ids) are refused at connection
   time: `Swarm.add_conn` is where an upgraded connection, its peer id now
   proven by Noise, is registered; a refused one is closed before any stream.
3. A relay's streams to the next hop park up to 16 MiB each: Yamux doubles a
   stream's receive window (`YamuxStream._apply_autotune_epoch`, up to
   `MAX_WINDOW_SIZE`) whenever its reader kept up for a few round trips, and a
   relay reads fast until its own caller slows down; then the far node fills
   the grown window, in the relay's memory. 100 slow relayed streams took a
   relay from 93 to 417 MiB. The window grows during the stream's protocol
   negotiation already (2 MiB when `host.new_stream` returns), so the cap goes
   on at creation: streams opened inside `capped_windows(limit)` (a context
   variable read by a wrapped `Yamux.open_stream`) keep their window at most
   `limit` bytes (the relay's `Limits.relay_window_bytes`).
4. Opening a stream costs two round trips of multistream-select:
   `MultiselectClient.select_one_of` writes `/multistream/1.0.0`, waits for
   its echo, and only then writes the protocol and waits again. js-libp2p
   (TypeScript olane) and go-libp2p send both in one write and read both
   answers; servers read them in order, so the answers are the same. The fix
   does that when one protocol is asked for (all our calls): one round trip
   and one write per stream open, which matters most when the connection is
   busy (100 streams opened at once wait behind each other's data). The
   answers are read in as few reads as they arrive in, so bytes a server sends
   right after its answer (identify speaks first) can come in the same read:
   they are handed back to the stream's next reads (with fix 7 they nearly
   always do, and dropping them left identify's peerstore entries empty).
5. A Yamux window update is sent after every read. py-libp2p's
   `YamuxStream._auto_tune_and_send_window_update` credits the bytes of each
   read at once when less than half the window is owed ("partial slack"), so
   every read costs one more Noise-encrypted write and a syscall on the
   reading side, and a wake-up and a read on the sending side: for a unary
   call, two of its four Noise messages. go-yamux (and js-libp2p) send an
   update only once half the window is owed, which leaves the sender at least
   half a window of room while the reader keeps up. The fix does that, for
   every Yamux stream of the process (py-libp2p makes streams deep inside its
   muxer; the class is the one place to reach them), once.
6. Every Yamux lock acquisition is a trip through the scheduler. Yamux
   guards its stream table (`Yamux.streams_lock`) and each stream's window
   (`YamuxStream.window_lock`) with `trio.Lock`, and acquiring a free
   `trio.Lock` is still a schedule point (every runnable task runs before the
   acquirer goes on). The read loop takes one or two per frame (a window update
   takes both), so while 100 streams are busy on a connection each frame read
   waits for a whole scheduler pass, and 100 stream opens (SYN, multistream
   answer, request: several frames each) came through one after another, about
   one frame per pass. No one holds either lock across an await (every guarded
   block is plain bookkeeping), so the fix swaps them for a lock that is taken
   at once when free and queues only when held (`QuickLock`), for every Yamux
   connection and stream of the process, once. The connection's write lock,
   held across socket writes, stays a `trio.Lock`.
7. A TCP read asks the socket for just the bytes wanted. Noise reads each
   message as a 2-byte length, then the body (`read_exactly` on
   `TrioTCPStream.read`), and each `TrioTCPStream.read` takes a `trio.Lock`
   and calls `receive_some(n)`: four schedule points and two system calls per
   message, however many messages already wait in the socket. The fix reads
   ahead (`READ_AHEAD` bytes per system call) and serves reads from what it
   holds without a trip through the scheduler, for every TCP connection of the
   process, once. Only the connection's one reader (the Noise handshake, then
   the Yamux read loop) reads it, so the order of bytes is unchanged. Reads
   served from held bytes still pass through the scheduler once per
   `SERVE_STEP` bytes: without one, the Yamux read loop took a whole read-ahead
   (four Noise messages, hundreds of frames) in one task step, 5-12 ms during
   which nothing else ran (in the console: the screen's loop, whose stalls it
   was).
8. The node reads a stream's multistream-select byte by byte. py-libp2p's
   `Multiselect.negotiate` writes `/multistream/1.0.0`, reads the caller's
   handshake and then its protocol with `read_delim` (a 1-byte read per varint
   byte, then the body), and answers with a second write: four reads and two
   writes per stream opened, each read through `NetStream`'s `trio.Lock`, so
   each a trip through the scheduler. With 100 streams opened on a connection
   while others stream, every trip waits for a whole pass of the busy
   producers: negotiation was the largest part of the time to first chunk.
   The fix reads what has arrived in one read (callers send the handshake and
   the protocol together: js-libp2p, go-libp2p, fix 4, and often the request
   right after), answers the handshake and the protocol in one write (the same
   bytes, in the same order), and hands bytes read past the protocol back to
   the stream's next reads (the request, for the protocol's handler). A caller
   that sends its protocol later is answered as before: the handshake first,
   then the protocol once it comes. Messages are at most
   `SELECT_MESSAGE_BYTES` (js-libp2p's limit); a longer one ends the
   negotiation (py-libp2p waited for any length).
9. A new stream's request waits a round trip for the protocol's answer
   (fix 4 leaves one). js-libp2p (`negotiateFully: false`), go-libp2p and
   rust-libp2p (`V1Lazy`) select "lazily" when they expect the protocol to be
   served: the handshake and the protocol go with the stream's first data, and
   the answers are read before the first answer bytes. Every listener reads
   the messages in order and hands what follows the protocol to its handler
   (js-libp2p's length-prefixed reader keeps it, py-libp2p reads exact
   lengths, fix 8 hands it back), so the bytes are the same as fix 4's, only
   sooner: 100 streams opened at once on a busy connection no longer wait for
   100 answers to come back through it before their requests go. Streams opened
   inside `lazy_protocol_select()` (the caller's `PeerPool.open_stream`, toward
   a peer of ours whose libp2p identify lists the protocol; not toward
   TypeScript olane, where it was not tried against a live node) do so. When the peer
   answers "na" after all, the stream's first read raises `ProtocolRefused`
   (the caller's 4002 Address not found); the peer refuses what followed as a
   broken message and resets the stream.
10. A new stream's first frames wait behind every data frame queued before
   them. Yamux's connection write lock (`Yamux._write_lock`, a `trio.Lock`,
   taken for every frame in `Yamux._write_frame`) serves writers in arrival
   order, and while streams are busy nearly every one of them has a 64 KiB
   frame waiting: 100 streams queue up to 6 MiB, which the peer takes as fast as
   it reads (20 MB/s for a Python client of 100 B chunks), so a new stream's
   multistream answer and first chunk, and the node's ACK of each new stream
   (written by the read loop, which waits meanwhile), came 300-600 ms late.
   Handing the lock from one waiter to the next also costs a scheduler pass
   each (100 answers queued took 100 passes of every busy task). The fix
   writes what waits together: the writer holding the turn writes its frame,
   then the frames queued meanwhile (up to `COMBINE_BYTES`) in one more write,
   ordered by the bytes each stream had sent before the frame, up to
   `FIRST_BYTES` (so a new stream's first frame ranks 0, however large): window updates, ACKs, resets, multistream
   answers and a new stream's first small frames go before frames that take a
   stream past its first `FIRST_BYTES`, which keep arrival order among
   themselves (no stream is held back for long: a stream jumps the queue for
   its first `FIRST_BYTES` only). A frame
   never passes an earlier one of its own stream (a FIN never overtakes its
   stream's data). For every Yamux connection of the process, once.
"""
from __future__ import annotations

import contextvars
import heapq
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import trio

from .errors import OlaneError
from .framing import _read_varint

log = logging.getLogger("olane.libp2p")

#: the upgraded connection of the inbound handler running in this task (fix 1)
_inbound: contextvars.ContextVar["_Upgraded"] = contextvars.ContextVar("olane_inbound_connection")


class _Upgraded:
    def __init__(self) -> None:
        self.conn: Any = None
        self.ready = trio.Event()


class PeerNotAllowed(Exception):
    """An inbound connection from a peer id the node does not admit."""


def release_inbound_slots_on_close(swarm) -> None:
    """Fix 1: an inbound connection's handler (and its limiter slot) ends when
    that connection closes, not when the swarm stops."""
    original_handle = swarm._do_handle_inbound_connection
    original_upgrade = swarm.upgrade_inbound_raw_conn

    async def upgrade(raw_conn, maddr):
        muxed = await original_upgrade(raw_conn, maddr)
        upgraded = _inbound.get(None)
        if upgraded is not None:
            upgraded.conn = muxed
            upgraded.ready.set()
        return muxed

    async def handle(read_write_closer, maddr, failure_event) -> None:
        upgraded = _Upgraded()
        token = _inbound.set(upgraded)  # child tasks inherit it: upgrade() finds it
        try:
            async with trio.open_nursery() as nursery:
                async def run_original() -> None:
                    try:
                        await original_handle(read_write_closer, maddr, failure_event)
                    finally:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(run_original)
                await upgraded.ready.wait()
                await wait_closed(upgraded.conn)
                nursery.cancel_scope.cancel()  # the original only waits for the swarm to stop
        finally:
            _inbound.reset(token)

    swarm._do_handle_inbound_connection = handle
    swarm.upgrade_inbound_raw_conn = upgrade


async def wait_closed(muxed_conn) -> None:
    """Until a muxed connection is closed or shutting down (Yamux sets
    `event_shutting_down` on close and when its read loop ends)."""
    event = getattr(muxed_conn, "event_shutting_down", None)
    if isinstance(event, trio.Event):
        await event.wait()
        return
    while not getattr(muxed_conn, "is_closed", True):  # other muxers: poll
        await trio.sleep(1)


def admit_only(swarm, allowed: Callable[[str], bool]) -> None:
    """Fix 2: close inbound connections from peers `allowed(peer_id)` refuses,
    before they are registered (so before any stream is accepted)."""
    original_add = swarm.add_conn

    async def add_conn(muxed_conn, direction: str = "unknown"):
        peer = muxed_conn.peer_id.to_string()
        if direction == "inbound" and not allowed(peer):
            log.info("refused a connection from %s: not on the allowlist", peer)
            try:
                await muxed_conn.close()
            except Exception:
                pass
            raise PeerNotAllowed(f"peer {peer} is not allowed")
        return await original_add(muxed_conn, direction)

    swarm.add_conn = add_conn


def inbound_slots_in_use(swarm) -> int:
    """How many inbound limiter slots are taken (for tests and soak figures)."""
    return int(swarm._inbound_limiter.borrowed_tokens)


#: the window cap for Yamux streams opened in this context (fix 3)
_window_cap: contextvars.ContextVar["int | None"] = contextvars.ContextVar("olane_window_cap", default=None)


@contextmanager
def capped_windows(limit: int) -> Iterator[None]:
    """Fix 3: Yamux streams opened inside this block keep their receive window at most `limit`."""
    _wrap_yamux_open_stream()
    token = _window_cap.set(limit)
    try:
        yield
    finally:
        _window_cap.reset(token)


def _wrap_yamux_open_stream() -> None:
    from libp2p.stream_muxer.yamux.yamux import Yamux

    if getattr(Yamux.open_stream, "_olane_capped", False):
        return
    original = Yamux.open_stream

    async def open_stream(self):
        stream = await original(self)
        limit = _window_cap.get()
        if limit is not None:
            cap_receive_window(stream, limit)
        return stream

    open_stream._olane_capped = True
    Yamux.open_stream = open_stream


def cap_receive_window(stream, limit: int) -> bool:
    """Fix 3: the Yamux receive window of `stream` (a NetStream or a YamuxStream) stays
    at most `limit` bytes from now on. False when the stream is not one this fix knows."""
    muxed = getattr(stream, "muxed_stream", stream)
    original = getattr(muxed, "_apply_autotune_epoch", None)
    if original is None or not hasattr(muxed, "target_recv_window"):
        return False
    muxed.target_recv_window = min(muxed.target_recv_window, limit)

    def capped(buffered: int) -> int:
        if muxed.target_recv_window * 2 > limit:  # doubling would pass the cap: stay
            muxed.epoch_start = trio.current_time()
            return 0
        return original(buffered)

    muxed._apply_autotune_epoch = capped
    return True


def pipeline_protocol_select(host) -> None:
    """Fix 4: select one protocol in one round trip (handshake and protocol in
    one write, then both answers read); several protocols: py-libp2p's own way."""
    from libp2p.protocol_muxer.exceptions import MultiselectClientError, MultiselectCommunicatorError
    from libp2p.protocol_muxer.multiselect_client import (
        MULTISELECT_PROTOCOL_ID, PROTOCOL_NOT_FOUND_MSG, DEFAULT_NEGOTIATE_TIMEOUT,
    )
    from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
    from libp2p.utils import encode_delim

    client = host.multiselect_client
    original = client.select_one_of

    async def select_one_of(protocols, communicator, negotiate_timeout=DEFAULT_NEGOTIATE_TIMEOUT):
        if len(protocols) != 1 or type(communicator) is not MultiselectCommunicator:
            return await original(protocols, communicator, negotiate_timeout)
        protocol = protocols[0]
        wanted = str(protocol)
        if _lazy_select.get():  # fix 9: the answers are read with the stream's first read
            _select_lazily(communicator.read_writer, wanted)
            return protocol
        with trio.move_on_after(negotiate_timeout):
            try:
                await communicator.read_writer.write(
                    encode_delim(MULTISELECT_PROTOCOL_ID.encode()) + encode_delim(wanted.encode()))
            except Exception as error:
                raise MultiselectClientError(f"handshake write failed: {error}") from error
            try:
                hello, answer = await _read_answers(communicator.read_writer, 2)
            except (MultiselectCommunicatorError, ValueError) as error:
                raise MultiselectClientError(f"protocol read failed: {error}, protocol={protocol}") from error
            except Exception as error:  # the stream ended or was reset
                raise MultiselectClientError(f"protocol read failed: {error!r}, protocol={protocol}") from error
            if hello != MULTISELECT_PROTOCOL_ID:
                raise MultiselectClientError(f"multiselect protocol ID mismatch: expected "
                                             f"{MULTISELECT_PROTOCOL_ID}, got {hello!r}")
            if answer == wanted:
                return protocol
            if answer == PROTOCOL_NOT_FOUND_MSG:
                raise MultiselectClientError(f"protocols not supported: tried [{wanted!r}], "
                                             f"timeout={negotiate_timeout}s. Last error: protocol not supported: "
                                             f"{protocol}, response={answer!r}")
            if answer == MULTISELECT_PROTOCOL_ID:  # the peer restarted the handshake: py-libp2p's own retry
                return await client.try_select(communicator, protocol)
            raise MultiselectClientError(f"unrecognized response: {answer!r}, expected {wanted!r} or "
                                         f"{PROTOCOL_NOT_FOUND_MSG!r}, protocol={protocol}")
        raise MultiselectClientError(f"response timed out after {negotiate_timeout}s, protocols tried: [{wanted!r}]")

    client.select_one_of = select_one_of


#: fix 9: streams opened in this context select their protocol lazily
_lazy_select: contextvars.ContextVar[bool] = contextvars.ContextVar("olane_lazy_select", default=False)


class ProtocolRefused(EOFError):
    """Fix 9: the peer does not serve the protocol a stream selected lazily ("na")."""


@contextmanager
def lazy_protocol_select() -> Iterator[None]:
    """Fix 9: a stream opened inside this block (one protocol asked for) sends
    the multistream handshake and protocol with its first write and reads the
    answers at its first read, instead of waiting for them before it is handed out."""
    token = _lazy_select.set(True)
    try:
        yield
    finally:
        _lazy_select.reset(token)


def _select_lazily(stream, protocol: str) -> None:
    """Fix 9: `stream`'s first write is prefixed with the handshake and
    `protocol`; its first read takes the two answers first (ProtocolRefused on
    "na", EOFError on anything else unexpected). Both are instance attributes
    that remove themselves: from then on the stream's own read and write."""
    from libp2p.protocol_muxer.multiselect_client import MULTISELECT_PROTOCOL_ID, PROTOCOL_NOT_FOUND_MSG
    from libp2p.utils import encode_delim

    unsent = [encode_delim(MULTISELECT_PROTOCOL_ID.encode()) + encode_delim(protocol.encode())]

    async def write(data: bytes) -> None:
        del stream.write
        await stream.write(unsent.pop() + data if unsent else data)

    async def read(n: int | None = None) -> bytes:
        del stream.read
        if unsent:  # read before any write: the handshake alone
            del stream.write
            await stream.write(unsent.pop())
        try:
            hello, answer = await _read_answers(stream, 2)
        except ValueError as error:
            raise EOFError(f"protocol selection failed: {error}") from error
        if hello != MULTISELECT_PROTOCOL_ID:
            raise EOFError(f"protocol selection failed: the peer answered {hello!r} to the handshake")
        if answer == PROTOCOL_NOT_FOUND_MSG:
            raise ProtocolRefused(f"the peer does not serve {protocol}")
        if answer != protocol:
            raise EOFError(f"protocol selection failed: the peer answered {answer!r} to {protocol!r}")
        return await stream.read(n)

    stream.write = write
    stream.read = read


#: fix 8: the longest multistream-select message the node reads (js-libp2p's MAX_PROTOCOL_LENGTH)
SELECT_MESSAGE_BYTES = 1024


def answer_protocol_select_at_once(host) -> None:
    """Fix 8: the node reads a stream's multistream handshake and protocol in as
    few reads as they arrive in and answers both in one write; other
    communicators: py-libp2p's own way."""
    from libp2p.custom_types import TProtocol
    from libp2p.protocol_muxer.exceptions import MultiselectError
    from libp2p.protocol_muxer.multiselect import (
        DEFAULT_NEGOTIATE_TIMEOUT, MULTISELECT_PROTOCOL_ID, PROTOCOL_NOT_FOUND_MSG,
    )
    from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
    from libp2p.utils import encode_delim

    muxer = host.multiselect
    original = muxer.negotiate
    hello = encode_delim(MULTISELECT_PROTOCOL_ID.encode())

    async def negotiate(communicator, negotiate_timeout=DEFAULT_NEGOTIATE_TIMEOUT):
        if type(communicator) is not MultiselectCommunicator:
            return await original(communicator, negotiate_timeout)
        stream = communicator.read_writer
        handlers = muxer.handlers
        buffer = b""
        pos = 0
        answer = hello  # what goes out with the next write: our handshake first, as py-libp2p sends it
        greeted = False
        try:
            with trio.fail_after(negotiate_timeout):
                while True:
                    try:
                        messages, end = _parse_messages(buffer, 1, pos)
                    except ValueError:
                        if answer:  # what was read so far is answered first, as py-libp2p does ("na" at once)
                            await stream.write(answer)
                        raise
                    if not messages:
                        if answer and buffer:  # all read is answered: say so before waiting (a caller may wait for it)
                            await stream.write(answer)
                            answer = b""
                        data = await stream.read(SELECT_MESSAGE_BYTES)
                        if not data:
                            raise MultiselectError("the stream ended during protocol selection")
                        buffer = buffer[pos:] + data
                        pos = 0
                        continue
                    command, pos = messages[0], end
                    if not greeted:
                        if command != MULTISELECT_PROTOCOL_ID:
                            if answer:
                                await stream.write(answer)
                            raise MultiselectError(f"multiselect protocol ID mismatch: received "
                                                   f"handshake_contents={command}")
                        greeted = True
                        continue
                    if command == "ls":
                        listed = "\n".join(p for p in handlers if p is not None) + "\n"
                        answer += encode_delim(listed.encode())
                        continue
                    protocol = None if not command else TProtocol(command)
                    if protocol in handlers:
                        await stream.write(answer + encode_delim(command.encode()))
                        if pos != len(buffer):
                            _put_back(stream, buffer[pos:])  # the protocol's first bytes: its handler reads them
                        return protocol, handlers[protocol]
                    answer += encode_delim(PROTOCOL_NOT_FOUND_MSG.encode())
        except trio.TooSlowError:
            raise MultiselectError("handshake read timeout") from None
        except MultiselectError:
            raise
        except ValueError as error:
            raise MultiselectError(f"unreadable protocol selection: {error}") from error
        except Exception as error:  # the stream ended or was reset
            raise MultiselectError(f"protocol selection failed: {error!r}") from error

    muxer.negotiate = negotiate


def window_updates_go_style() -> None:
    """Fix 5: Yamux window updates only once half the receive window is owed
    (go-yamux semantics), not after every read. Process-wide, idempotent."""
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    if hasattr(YamuxStream, "_olane_original_window_update"):
        return

    async def auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        total = 0
        async with self.window_lock:
            if bytes_read > 0:
                self._pending_recv_release += bytes_read
            buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
            owed = self.target_recv_window - (self.recv_window + buffered)
            threshold = self._grow_threshold()
            if owed >= threshold and owed > 0:  # py-libp2p's own "GrowTo", unchanged
                total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
                self._pending_recv_release = 0
            elif self._pending_recv_release >= threshold > 0:
                total = self._pending_recv_release
                self.recv_window += total
                self._pending_recv_release = 0
                total += self._apply_autotune_epoch(buffered)
            # else: under half the window owed; the sender still has room for the rest
        if total > 0:
            await self.send_window_update(total, skip_lock=True)

    YamuxStream._olane_original_window_update = YamuxStream._auto_tune_and_send_window_update
    YamuxStream._auto_tune_and_send_window_update = auto_tune_and_send_window_update


class QuickLock:
    """Fix 6: a lock for blocks that never await (plain bookkeeping): taken at
    once when free, with no trip through the scheduler; when held (a block that
    does await, such as Yamux's close), waiters queue in order and each is
    handed the lock in turn, as with `trio.Lock`."""

    __slots__ = ("_held", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._waiting = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        await self._waiting.park()  # release() hands the lock over: still held, now ours

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("QuickLock released while not held")
        if self._waiting:
            self._waiting.unpark()
        else:
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        self.release()


def quick_yamux_locks() -> None:
    """Fix 6: the stream-table and window locks of Yamux connections and streams
    made from now on are QuickLocks (no schedule point when free). Process-wide, idempotent."""
    from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

    if hasattr(YamuxStream, "_olane_original_init"):
        return

    conn_init = Yamux.__init__
    stream_init = YamuxStream.__init__

    def yamux_init(self, *args, **kwargs) -> None:
        conn_init(self, *args, **kwargs)
        self.streams_lock = QuickLock()

    def stream_init_quick(self, *args, **kwargs) -> None:
        stream_init(self, *args, **kwargs)
        self.window_lock = QuickLock()

    Yamux._olane_original_init = conn_init
    YamuxStream._olane_original_init = stream_init
    Yamux.__init__ = yamux_init
    YamuxStream.__init__ = stream_init_quick


#: fix 7: bytes asked of a TCP socket per read (what the Yamux read loop then takes
#: frame by frame without waiting)
READ_AHEAD = 256 * 1024
#: ... and bytes handed out from what it holds between two schedule points
SERVE_STEP = 64 * 1024

def tcp_read_ahead() -> None:
    """Fix 7: TCP reads take up to READ_AHEAD bytes from the socket and hand them
    out as asked, with no schedule point while bytes are held. Process-wide, idempotent."""
    from libp2p.io.trio import TrioTCPStream

    if hasattr(TrioTCPStream, "_olane_original_read"):
        return

    original = TrioTCPStream.read

    async def read(self, n: int | None = None) -> bytes:
        held = self.__dict__.get("_olane_held")
        if held:  # bytes read ahead: no socket call, no schedule point (but one per SERVE_STEP)
            pos = self._olane_pos
            if pos - self._olane_stepped >= SERVE_STEP:
                self._olane_stepped = pos
                await trio.lowlevel.checkpoint()  # the one reader: the bytes held are still ours
            if n is None or n >= len(held) - pos:
                self._olane_held = None
                return held[pos:] if pos else held
            end = pos + n
            self._olane_pos = end
            return held[pos:end]
        if n == 0:
            return b""
        data = await original(self, max(n or 0, READ_AHEAD))
        if n is None or len(data) <= n:
            return data
        self._olane_held = data
        self._olane_pos = n
        self._olane_stepped = 0  # the socket read was a schedule point
        return data[:n]

    TrioTCPStream._olane_original_read = original
    TrioTCPStream.read = read


#: fix 10: the bytes of each stream whose frames go before data of busier streams
FIRST_BYTES = 64 * 1024
#: fix 10: the most bytes of waiting frames the writer holding the turn writes with its own
COMBINE_BYTES = 512 * 1024


class WriteTurns:
    """Fix 10: a Yamux connection's writes, one at a time, lowest rank first
    (arrival order among equals), waiting frames written together. The writer
    holding the turn writes its frame, then every frame that queued meanwhile
    (up to COMBINE_BYTES, in rank order) in one more write, and wakes their
    writers at once: one trip through the scheduler for all of them instead of
    one each (a trio.Lock hands over to one waiter per scheduler pass). A waiter
    never gets a rank below an earlier waiter of the same stream, so one
    stream's frames stay in order."""

    __slots__ = ("_busy", "_heap", "_arrivals", "_queued")

    def __init__(self) -> None:
        self._busy = False
        self._heap: list[list] = []  # [rank, arrival, event (None once gone), stream id, frame, outcome]
        self._arrivals = 0
        self._queued: dict[int, list[int]] = {}  # stream id -> [waiters, highest rank among them]

    def locked(self) -> bool:
        return self._busy

    async def write(self, write, data: bytes, stream_id: int = 0, rank: int = 0) -> None:
        """`await write(bytes)` for `data`, in its turn (or in another writer's turn, with others)."""
        if self._busy:
            entry = self._wait_entry(stream_id, rank, data)
            event = entry[2]
            try:
                await event.wait()
            except BaseException:
                if not event.is_set():
                    entry[2] = None
                    self._unqueue(stream_id)
                elif entry[5] is None:  # handed the turn as we were cancelled: pass it on
                    self._hand_over()
                raise  # (a frame already taken goes out all the same)
            outcome = entry[5]
            if outcome is not None:  # written with others by the writer holding the turn
                if outcome is not True:
                    raise outcome
                return
        else:
            self._busy = True
        try:
            await write(data)
            await self._write_waiting(write)
        finally:
            self._hand_over()

    def _wait_entry(self, stream_id: int, rank: int, data: bytes) -> list:
        queued = self._queued.get(stream_id)
        if queued is None:
            self._queued[stream_id] = [1, rank]
        else:
            queued[0] += 1
            if queued[1] > rank:
                rank = queued[1]
            else:
                queued[1] = rank
        self._arrivals += 1
        entry = [rank, self._arrivals, trio.Event(), stream_id, data, None]
        heapq.heappush(self._heap, entry)
        return entry

    async def _write_waiting(self, write) -> None:
        heap = self._heap
        taken: list[list] = []
        size = 0
        while heap and size < COMBINE_BYTES:
            entry = heapq.heappop(heap)
            if entry[2] is None:  # its writer was cancelled while it waited
                continue
            self._unqueue(entry[3])
            taken.append(entry)
            size += len(entry[4])
        if not taken:
            return
        outcome: "bool | Exception" = True
        try:
            await write(b"".join([entry[4] for entry in taken]))
        except BaseException as error:
            outcome = error if isinstance(error, Exception) else ConnectionError("the connection's write was cut short")
            raise
        finally:
            for entry in taken:
                entry[5] = outcome
                entry[2].set()

    def _hand_over(self) -> None:
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)
            if entry[2] is not None:
                self._unqueue(entry[3])
                entry[2].set()  # still busy: the turn is theirs
                return
        self._busy = False

    def _unqueue(self, stream_id: int) -> None:
        queued = self._queued[stream_id]
        queued[0] -= 1
        if not queued[0]:
            del self._queued[stream_id]


def fair_yamux_writes() -> None:
    """Fix 10: Yamux connections made from now on hand out their writes by
    WriteTurns: control frames and new streams' first FIRST_BYTES first.
    Process-wide, idempotent."""
    from libp2p.stream_muxer.yamux.yamux import HEADER_SIZE, TYPE_DATA, YAMUX_HEADER_FORMAT, Yamux

    if hasattr(Yamux, "_olane_original_write_frame"):
        return
    import struct

    header = struct.Struct(YAMUX_HEADER_FORMAT)
    conn_init = Yamux.__init__
    original_write_frame = Yamux._write_frame

    def yamux_init(self, *args, **kwargs) -> None:
        conn_init(self, *args, **kwargs)
        self._write_lock = WriteTurns()

    async def write_frame(self, data: bytes) -> None:
        turns = self._write_lock
        if type(turns) is not WriteTurns or len(data) < HEADER_SIZE:
            return await original_write_frame(self, data)
        _, kind, _, stream_id, length = header.unpack_from(data)
        rank = 0
        if kind == TYPE_DATA and length:
            stream = self.streams.get(stream_id)
            if stream is not None:
                before = stream.__dict__.get("_olane_sent", 0)  # its bytes before this frame
                stream._olane_sent = before + length
                rank = before if before < FIRST_BYTES else FIRST_BYTES
        await turns.write(self.secured_conn.write, data, stream_id, rank)
        await trio.lowlevel.checkpoint()

    Yamux._olane_original_write_frame = original_write_frame
    Yamux._olane_init_before_turns = conn_init
    Yamux.__init__ = yamux_init
    Yamux._write_frame = write_frame


def process_wide_fixes() -> list[str]:
    """Which of the process-wide fixes (5-7, 10) are in force in this process (the
    bench's stock py-libp2p processes check that they run none)."""
    from libp2p.io.trio import TrioTCPStream
    from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

    return [name for name, applied in (
        ("5 window updates", hasattr(YamuxStream, "_olane_original_window_update")),
        ("6 quick Yamux locks", hasattr(YamuxStream, "_olane_original_init")),
        ("7 TCP read-ahead", hasattr(TrioTCPStream, "_olane_original_read")),
        ("10 combined Yamux writes", hasattr(Yamux, "_olane_original_write_frame"))) if applied]


async def _read_answers(stream, count: int) -> list[str]:
    """`count` multistream-select messages (varint length, text, newline) read in
    as few reads as they arrive in, usually one (py-libp2p reads a byte at a time:
    each read is a trip through the scheduler, ~4 per stream open, and on a busy
    connection each trip waits for every other task). A server may speak first
    right after its answer (identify sends its message unasked), so bytes read
    past the answers are handed back: the stream's next reads return them first."""
    buffer = b""
    while True:
        messages, end = _parse_messages(buffer, count)
        if len(messages) == count:
            if end != len(buffer):
                _put_back(stream, buffer[end:])
            return messages
        data = await stream.read(1024)
        if not data:
            raise ValueError("the stream ended during protocol selection")
        buffer += data


def _put_back(stream, data: bytes) -> None:
    """`stream.read` returns `data` first (as much of it as asked), then reads
    the stream again as before (the instance's own `read` is dropped)."""
    held = data

    async def read(n: int | None = None) -> bytes:
        nonlocal held
        if n is None or n >= len(held):
            out = held
            del stream.read  # all handed back: the class's read from now on
        else:
            out, held = held[:n], held[n:]
        return out

    stream.read = read


def _parse_messages(buffer: bytes, count: int, pos: int = 0) -> tuple[list[str], int]:
    """Up to `count` whole multistream-select messages (varint length, text,
    newline) from `buffer[pos:]`, and the position after the last one.
    ValueError for a malformed one or one longer than SELECT_MESSAGE_BYTES."""
    messages: list[str] = []
    end = len(buffer)
    while len(messages) < count and pos < end:
        try:
            header = _read_varint(buffer, pos, end)
        except OlaneError as error:
            raise ValueError(error.message) from None
        if header is None:  # the length prefix is not all here yet
            break
        length, start = header
        if length > SELECT_MESSAGE_BYTES:
            raise ValueError(f"a message of {length} bytes (at most {SELECT_MESSAGE_BYTES})")
        if start + length > end:
            break
        body = buffer[start:start + length]
        if not body.endswith(b"\n"):
            raise ValueError(f"a message not ended by a newline: {body[:40]!r}")
        messages.append(body[:-1].decode())
        pos = start + length
    return messages, pos
