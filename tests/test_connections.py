"""Connections for life (issue 8), over real libp2p on 127.0.0.1: callers in
sequence are never refused, connections close when their owner leaves or sits
idle, and a node can admit only the peers it names. Also pins the py-libp2p
0.8.1 behaviour that node_runtime/libp2p_fixes.py corrects: if py-libp2p
changes it, the pin fails and the fix can go."""
from __future__ import annotations

import gc

import multiaddr
import pytest
import trio

from node_runtime import Client, ErrorCode, Limits, Node, OlaneError, Request, Tool
from node_runtime.host import key_pair_from_seed, new_olane_host, parse_peer_multiaddr, peer_id_for_seed
from node_runtime.libp2p_fixes import inbound_slots_in_use

from trio_helpers import run_trio


class TaskSteps(trio.abc.Instrument):
    """Counts the steps of one task: each one after its first is a trip through the scheduler."""

    def __init__(self, task) -> None:
        self.task = task
        self.count = 0

    def before_task_step(self, task) -> None:
        if task is self.task:
            self.count += 1


async def wait_until(predicate, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"not within {timeout} s: {what}")


def test_py_libp2p_still_keeps_an_inbound_slot_per_closed_connection():
    """The pin: a bare py-libp2p host (no fix) keeps one inbound-limiter slot for
    every connection that has come and gone. When this fails, py-libp2p gives slots
    back by itself: drop release_inbound_slots_on_close."""
    async def body():
        host = new_olane_host(key_pair_from_seed("bare-host"))
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            ma = f"{host.get_addrs()[0]}"
            ma = ma if "/p2p/" in ma else f"{ma}/p2p/{host.get_id()}"
            for i in range(3):
                dialer = new_olane_host(key_pair_from_seed(f"dialer-{i}"))
                async with dialer.run(listen_addrs=[]):
                    await dialer.connect(parse_peer_multiaddr(ma))
                    await dialer.get_network().close_peer(host.get_id())
                await wait_until(lambda: not host.get_network().connections, 5, "the bare host sees the close")
            await trio.sleep(0.2)
            return inbound_slots_in_use(host.get_network())

    assert run_trio(body) == 3


def test_three_hundred_callers_in_sequence_are_all_served():
    """The 251st caller, and every one after it, was refused until restart (each
    closed connection kept its slot). `olane bench --soak` runs 10,000."""
    async def body():
        async with Node([Tool("o://seq")]) as node:
            ma = node.listen_addrs[0]
            for i in range(300):
                async with Client() as client:
                    assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}
            await wait_until(lambda: inbound_slots_in_use(node.host.get_network()) == 0, 5,
                             "every inbound slot given back")
            await wait_until(lambda: not node.peers.connected_peers(), 5, "no connection left open")

    run_trio(body, timeout=240)


def test_leaving_async_with_client_closes_its_connection_at_once():
    """`async with Client()` left its connection ESTABLISHED on both ends."""
    async def body():
        async with Node([Tool("o://seq")]) as node:
            async with Client() as client:
                await client.use("o://seq", "ping", via=node.listen_addrs[0], timeout=10)
                assert node.peers.connected_peers() == [client.peer_id]
            await wait_until(lambda: not node.peers.connected_peers(), 1.0, "the node sees the close")

    run_trio(body)


def test_a_client_cancelled_whole_closes_its_connection_and_the_node_sees_it():
    """Cancelling the nursery a Client runs in (as the console's quit does) cancels
    py-libp2p's own close of the connection part way: close_all finishes it, so the
    socket closes (the node sees it) instead of the client waiting out its grace
    with the connection left open."""
    async def body():
        async with Node([Tool("o://seq")]) as node:
            async with trio.open_nursery() as nursery:
                async def caller() -> None:
                    async with Client() as client:
                        await client.use("o://seq", "ping", via=node.listen_addrs[0], timeout=10)
                        await trio.sleep_forever()

                nursery.start_soon(caller)
                await wait_until(lambda: node.peers.connected_peers(), 5.0, "the client connected")
                nursery.cancel_scope.cancel()
            await wait_until(lambda: not node.peers.connected_peers(), 5.0, "the node sees the close")

    run_trio(body)


def test_the_node_closes_connections_idle_past_the_limit_but_not_busy_ones():
    class Slow(Tool):
        address = "o://slow"

        async def _tool_tick(self, request, count: int = 30):
            for i in range(count):
                yield {"i": i}
                await trio.sleep(0.1)

    async def body():
        async with Node([Slow()], limits=Limits(idle_connection_timeout=0.5)) as node:
            ma = node.listen_addrs[0]
            async with Client() as idle, Client() as busy:
                await idle.use("o://slow", "ping", via=ma, timeout=10)
                chunks = 0
                async for _ in busy.use_streaming("o://slow", "tick", {"count": 25}, via=ma, timeout=20):
                    chunks += 1  # 2.5 s of one stream: its connection is in use throughout
                assert chunks == 25
                # the idle caller's pooled stream kept its connection from nothing
                assert idle.peer_id not in node.peers.connected_peers()
                assert node.peers.idle_closed >= 1
                # and its next call redials and opens a new stream, unnoticed
                assert await idle.use("o://slow", "ping", via=ma, timeout=10) == {"message": "Pong!"}

    run_trio(body)


def test_an_allowlist_admits_only_the_peers_it_names():
    async def body():
        friend = peer_id_for_seed("friend")
        async with Node([Tool("o://guarded")], allow={friend}) as node:
            ma = node.listen_addrs[0]
            async with Client(seed="friend") as ok:
                assert await ok.use("o://guarded", "ping", via=ma, timeout=10) == {"message": "Pong!"}
            served = node.metrics.snapshot()["requestsTotal"]
            async with Client(seed="stranger") as stranger:
                with pytest.raises(OlaneError) as caught:
                    await stranger.use("o://guarded", "ping", via=ma, timeout=10)
            assert caught.value.code == ErrorCode.FAILED_TO_DIAL_TARGET
            assert "not allow" in caught.value.message and stranger.peer_id in caught.value.message
            assert node.metrics.snapshot()["requestsTotal"] == served  # the stranger never got a stream
            node.peers.set_allowlist({friend, peer_id_for_seed("stranger")})
            async with Client(seed="stranger") as now_ok:
                assert await now_ok.use("o://guarded", "ping", via=ma, timeout=10) == {"message": "Pong!"}

    run_trio(body)


def test_olane_node_allow_file_is_reread_on_sighup(tmp_path):
    """`olane node --allow-file FILE`: strangers refused before any stream; after the
    file names them and SIGHUP, they are admitted."""
    import signal

    from process_helpers import start_node, stop_process

    friend, stranger = peer_id_for_seed("friend"), peer_id_for_seed("stranger")
    allow = tmp_path / "allowed.txt"
    allow.write_text(f"# who may call\n{friend}\n")
    proc, ma = start_node("--tools", "demo", "--allow-file", str(allow))
    try:
        async def call_as(seed: str):
            async with Client(seed=seed) as client:
                return await client.use("o://demo", "ping", via=ma, timeout=10)

        assert run_trio(lambda: call_as("friend")) == {"message": "Pong!"}
        with pytest.raises(OlaneError) as caught:
            run_trio(lambda: call_as("stranger"))
        assert "not allow" in caught.value.message
        allow.write_text(f"{friend}\n{stranger}\n")
        proc.send_signal(signal.SIGHUP)

        async def admitted_after_reload():
            with trio.fail_after(10):
                while True:
                    try:
                        return await call_as("stranger")
                    except OlaneError:
                        await trio.sleep(0.1)

        assert run_trio(admitted_after_reload, timeout=20) == {"message": "Pong!"}
        assert proc.poll() is None
    finally:
        stop_process(proc)
    assert "SIGHUP: allowlist re-read (2 peer ids" in proc.stderr.read()


def test_olane_node_refuses_a_bad_allowlist_and_knows_what_is_loopback():
    from console.cli import _is_loopback
    from process_helpers import olane

    out = olane("node", "--listen", "/ip4/127.0.0.1/tcp/0", "--allow", "nonsense")
    assert out.returncode == 2 and "not a peer id" in out.stderr
    # the no-allowlist warning is printed for any --listen that is not loopback (not bound here: tests
    # listen on 127.0.0.1 only)
    assert _is_loopback("/ip4/127.0.0.1/tcp/0") and _is_loopback("/ip6/::1/tcp/4001")
    assert not _is_loopback("/ip4/0.0.0.0/tcp/4001") and not _is_loopback("/ip4/192.0.2.7/tcp/4001")


def test_py_libp2p_grows_a_streams_receive_window_and_capped_windows_keeps_it_small():
    """Fix 3: py-libp2p grows a Yamux stream's receive window toward 16 MiB (already during the
    protocol negotiation); a relay opens its next-hop streams inside `capped_windows`."""
    from contextlib import nullcontext

    from node_runtime.libp2p_fixes import capped_windows
    from stream_demo_tool import StreamDemoTool

    limit = 256 * 1024

    async def body():
        async with Node([StreamDemoTool("o://w")]) as node:
            ma = node.listen_addrs[0]
            largest = {}
            for cap in (None, limit):
                # a client each: the second call must open its stream here, not take the first's from the pool
                async with Client(codec="json") as client:
                    with capped_windows(cap) if cap else nullcontext():
                        call = client.use_streaming("o://w", "stream_items", {"count": 20_000}, via=ma)
                        await call.start()
                    muxed = call._stream.muxed_stream
                    seen = 0
                    async for _ in call:
                        largest[cap] = max(largest.get(cap, 0), muxed.target_recv_window)
                        seen += 1
                    assert seen == 20_000
            assert largest[None] > limit  # the behaviour fixed (if this fails, py-libp2p changed: drop the fix)
            assert largest[limit] <= limit

    run_trio(body, 30)
def test_protocol_select_takes_one_write_with_the_fix_and_two_without():
    """Fix 4 (libp2p_fixes.pipeline_protocol_select) and its pin: a bare py-libp2p
    host writes the multistream handshake, waits for its echo, then writes the
    protocol (two writes, two round trips per stream open); with the fix both go
    in one write, and the node still answers, and still says when it serves no
    such protocol (4002). When the pin fails, py-libp2p pipelines by itself: drop the fix."""
    from libp2p.custom_types import TProtocol
    from libp2p.host.exceptions import StreamFailure
    from libp2p.network.stream.net_stream import NetStream

    from node_runtime.libp2p_fixes import pipeline_protocol_select

    writes: list[object] = []  # the stream each write went to
    original_write = NetStream.write

    async def counting_write(self, data: bytes) -> None:
        writes.append(self)
        await original_write(self, data)

    async def open_and_count(host, peer) -> int:
        writes.clear()
        stream = await host.new_stream(peer, [TProtocol("/o/seq")])
        count = sum(1 for s in writes if s is stream)
        await stream.reset()
        return count

    async def body():
        async with Node([Tool("o://seq")]) as node:
            peer = parse_peer_multiaddr(node.listen_addrs[0])
            bare = new_olane_host(key_pair_from_seed("bare-select"))
            async with bare.run(listen_addrs=[]):
                with trio.fail_after(10):
                    await bare.connect(peer)
                    NetStream.write = counting_write
                    try:
                        without = await open_and_count(bare, peer.peer_id)
                        pipeline_protocol_select(bare)
                        with_fix = await open_and_count(bare, peer.peer_id)
                        with pytest.raises(StreamFailure):
                            await bare.new_stream(peer.peer_id, [TProtocol("/o/nobody")])
                    finally:
                        NetStream.write = original_write
            async with Client() as client:  # a whole call over the fixed select
                assert await client.use("o://seq", "ping", via=node.listen_addrs[0], timeout=10) == {"message": "Pong!"}
        return without, with_fix

    assert run_trio(body) == (2, 1)


def test_pipelined_select_hands_back_what_a_server_sends_right_after_its_answer():
    """Fix 4 reads the two multistream answers in as few reads as they come in; a
    server that speaks first (identify sends its message unasked) can have its
    first bytes in that same read. They must reach the protocol's reader, in order
    (once TCP reads ran ahead, identify lost them and left the peerstore empty).
    A narrow unit: a stream that delivers everything in one read."""
    from libp2p.utils import encode_delim

    from node_runtime.libp2p_fixes import _read_answers

    class OneRead:
        def __init__(self, data: bytes) -> None:
            self.data = data

        async def read(self, n: int | None = None) -> bytes:
            out, self.data = self.data[:n], self.data[n:]
            return out

    async def body():
        stream = OneRead(encode_delim(b"/multistream/1.0.0") + encode_delim(b"/ipfs/id/1.0.0") + b"hello-identify"
                         + b"|rest")
        answers = await _read_answers(stream, 2)
        return answers, [await stream.read(5), await stream.read(100), await stream.read(100)]

    assert run_trio(body) == (["/multistream/1.0.0", "/ipfs/id/1.0.0"], [b"hello", b"-identify|rest", b""])


def test_the_node_answers_protocol_select_in_one_write_with_fix_8_and_reads_it_piece_by_piece_without():
    """Fix 8 (libp2p_fixes.answer_protocol_select_at_once) and its pin: a bare
    py-libp2p host reads the multistream handshake and the protocol of a new
    stream in four reads (each varint byte, then each body) and answers in two
    writes; with the fix, what came together is read in one read and answered in
    one write, bytes sent right after the protocol reach its handler, and a
    protocol it does not serve is still refused ("na"). When the pin fails,
    py-libp2p reads the handshake whole: drop the fix."""
    from libp2p.custom_types import TProtocol
    from libp2p.host.exceptions import StreamFailure
    from libp2p.network.stream.net_stream import NetStream
    from libp2p.utils import encode_delim

    from node_runtime.libp2p_fixes import answer_protocol_select_at_once, pipeline_protocol_select

    reads: dict[object, int] = {}
    writes: dict[object, int] = {}
    read, write = NetStream.read, NetStream.write

    async def counting_read(self, n=None):
        reads[self] = reads.get(self, 0) + 1
        return await read(self, n)

    async def counting_write(self, data):
        writes[self] = writes.get(self, 0) + 1
        await write(self, data)

    async def negotiate(fixed: bool) -> tuple[int, int, bytes, bool]:
        """(reads, writes) the server made before its handler ran, what the handler
        read first, and whether /o/nobody was refused."""
        server = new_olane_host(key_pair_from_seed(f"select-server-{fixed}"))
        caller = new_olane_host(key_pair_from_seed("select-caller"))
        pipeline_protocol_select(caller)  # handshake and protocol in one write, as js-libp2p sends them
        if fixed:
            answer_protocol_select_at_once(server)
        seen: list = []

        async def handler(stream) -> None:
            seen.append((reads.get(stream, 0), writes.get(stream, 0), await stream.read(100)))
            await stream.write(b"ok")

        server.set_stream_handler(TProtocol("/o/seq"), handler)
        async with server.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]), \
                caller.run(listen_addrs=[]):
            with trio.fail_after(10):
                addr = f"{server.get_addrs()[0]}"
                info = parse_peer_multiaddr(addr if "/p2p/" in addr else f"{addr}/p2p/{server.get_id()}")
                await caller.connect(info)
                NetStream.read, NetStream.write = counting_read, counting_write
                try:
                    stream = await caller.new_stream(info.peer_id, [TProtocol("/o/seq")])
                    await stream.write(b"request")
                    assert await stream.read(2) == b"ok"
                    # handshake, protocol and the first bytes in one write (a lazy select, as js-libp2p may send)
                    raw = await caller.get_network().new_stream(info.peer_id)
                    await raw.write(encode_delim(b"/multistream/1.0.0") + encode_delim(b"/o/seq") + b"at once")
                    answers = encode_delim(b"/multistream/1.0.0") + encode_delim(b"/o/seq") + b"ok"
                    got = b""
                    while len(got) < len(answers):
                        got += await raw.read(100)
                    assert got == answers
                    refused = False
                    try:
                        await caller.new_stream(info.peer_id, [TProtocol("/o/nobody")])
                    except StreamFailure:
                        refused = True
                finally:
                    NetStream.read, NetStream.write = read, write
        (r, w, first), (_, _, lazy_first) = seen
        assert first == b"request" and lazy_first == b"at once"
        return r, w, refused

    async def body():
        return await negotiate(False), await negotiate(True)

    bare, fixed = run_trio(body, 40)
    assert bare == (4, 2, True)  # the pin: read piece by piece, answered in two writes
    assert fixed == (1, 1, True)


def test_a_lazy_select_sends_the_request_with_the_handshake_and_still_hears_na():
    """Fix 9 (libp2p_fixes.lazy_protocol_select) and its pin: py-libp2p's
    new_stream reads the peer's answer to the protocol before it returns the
    stream (fix 4 leaves that one round trip), so a request waits for it. With
    the fix, a caller's stream toward a peer whose identify lists the protocol
    is handed out at once; its first write carries the handshake, the protocol
    and the request; the call is answered; and a protocol the peer does not
    serve after all (listed, but "na") is still that call's 4002, with the
    connection and the next call fine. When the pin fails, py-libp2p selects
    lazily by itself: look again at the fix."""
    from libp2p.custom_types import TProtocol
    from libp2p.network.stream.net_stream import NetStream

    from node_runtime.addresses import Address
    from node_runtime.libp2p_fixes import lazy_protocol_select

    events: list[tuple[str, object]] = []
    read, write = NetStream.read, NetStream.write

    async def noting_read(self, n=None):
        events.append(("read", self))
        return await read(self, n)

    async def noting_write(self, data):
        events.append(("write", self))
        await write(self, data)

    async def body():
        async with Node([Tool("o://seq")]) as node, Client() as client:
            ma = node.listen_addrs[0]
            assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}  # identify known
            peer = await client.peers.peer_at(ma)
            assert client.peers.lists_protocol(peer, "/o/seq")
            NetStream.read, NetStream.write = noting_read, noting_write
            try:
                with trio.fail_after(10):
                    events.clear()
                    stream = await client.host.new_stream(peer, [TProtocol("/o/seq")])
                    read_before_return = [s for kind, s in events if kind == "read" and s is stream]
                    await stream.reset()
                    with lazy_protocol_select():
                        events.clear()
                        stream = await client.host.new_stream(peer, [TProtocol("/o/seq")])
                        lazy_read_before_return = [s for kind, s in events if kind == "read" and s is stream]
                        await stream.reset()
                    events.clear()
                    client.peers._pooled.clear()  # a new stream, opened lazily by the call itself
                    assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}
                    call_writes = [kind for kind, s in events if kind == "write" and s.muxed_stream.is_initiator]
                    # a peer not known to be ours (no olane identify features: TypeScript olane)
                    # gets fix 4's select: the protocol's answer before the request
                    key = (peer.to_string(), "/o/seq")
                    features = client.peers._features.pop(key)
                    events.clear()
                    client.peers._pooled.clear()
                    assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}
                    plain_writes = [kind for kind, s in events if kind == "write" and s.muxed_stream.is_initiator]
                    client.peers._features[key] = features
            finally:
                NetStream.read, NetStream.write = read, write
            client.host.get_peerstore().add_protocols(peer, ["/o/nobody"])  # listed, not served
            assert client.peers.lists_protocol(peer, "/o/nobody")
            with pytest.raises(OlaneError) as refused:
                await client.use("o://nobody", "ping", via=ma, timeout=10)
            assert refused.value.code == ErrorCode.NOT_FOUND
            assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}
        return len(read_before_return), len(lazy_read_before_return), call_writes, plain_writes

    bare, lazy, call_writes, plain_writes = run_trio(body, 40)
    assert bare >= 1  # the pin: py-libp2p reads the answer before handing the stream out
    assert lazy == 0
    assert call_writes == ["write"]  # handshake, protocol and request in one
    assert plain_writes == ["write", "write"]  # handshake and protocol, then the request


def test_yamux_writes_go_in_arrival_order_without_fix_10_and_new_streams_first_with_it():
    """Fix 10 (libp2p_fixes.fair_yamux_writes) and its pin: a Yamux connection
    hands its one write lock to waiting frames in arrival order, one write (and
    one scheduler pass) each, so a window update or a new stream's first frame
    waits behind every 64 KiB data frame queued before it. With the fix the
    frames that waited go out together in one write. With the fix they go first (a small first frame: a
    multistream answer, a first chunk) in that write, frames that take a stream past its
    first FIRST_BYTES keep arrival order, and a stream's FIN never overtakes
    its own data. When the pin fails, py-libp2p schedules its writes itself:
    look again at the fix."""
    import struct
    import types

    import trio.testing
    from libp2p.stream_muxer.yamux.yamux import FLAG_FIN, TYPE_DATA, TYPE_WINDOW_UPDATE, YAMUX_HEADER_FORMAT, Yamux

    from node_runtime.libp2p_fixes import FIRST_BYTES, fair_yamux_writes

    fair_yamux_writes()

    class Wire:
        """A secured connection whose first write holds on until `go` is set."""
        is_initiator = True

        def __init__(self) -> None:
            self.frames: list[str] = []
            self.writes = 0
            self.go = trio.Event()

        async def write(self, data: bytes) -> None:
            self.writes += 1
            pos = 0
            while pos < len(data):
                _, kind, flags, sid, length = struct.unpack(YAMUX_HEADER_FORMAT, data[pos:pos + 12])
                self.frames.append(f"{'data' if kind == TYPE_DATA else 'fin' if flags & FLAG_FIN else 'update'} {sid}")
                pos += 12 + (length if kind == TYPE_DATA else 0)
            if self.writes == 1:
                await self.go.wait()

    def data(sid: int, size: int = 65536) -> bytes:
        return struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, sid, size) + bytes(size)

    def header(sid: int, flags: int = 0) -> bytes:
        return struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_WINDOW_UPDATE, flags, sid, 0 if flags else 4096)

    async def order(init, write_frame) -> list[str]:
        wire = Wire()
        conn = Yamux.__new__(Yamux)
        init(conn, wire, None, True)
        for sid in (1, 3, 5, 7):
            conn.streams[sid] = types.SimpleNamespace()
        conn.streams[1]._olane_sent = conn.streams[3]._olane_sent = FIRST_BYTES  # busy streams
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for frame in (data(1), data(3), data(1), header(5), data(3), header(3, FLAG_FIN), data(7, 1000)):
                    nursery.start_soon(write_frame, conn, frame)
                    await trio.testing.wait_all_tasks_blocked()  # each one queued in turn
                wire.go.set()
        return wire.frames, wire.writes

    async def body():
        bare = await order(Yamux._olane_init_before_turns, Yamux._olane_original_write_frame)
        fixed = await order(Yamux.__init__, Yamux._write_frame)
        return bare, fixed

    bare, fixed = run_trio(body)
    assert bare == (["data 1", "data 3", "data 1", "update 5", "data 3", "fin 3", "data 7"], 7)  # the pin
    # the six that waited go out in one write, small ones first
    assert fixed == (["data 1", "update 5", "data 7", "data 3", "data 1", "data 3", "fin 3"], 2)


def test_yamux_window_updates_after_every_read_without_the_fix_and_once_half_is_owed_with_it():
    """Fix 5 (libp2p_fixes.window_updates_go_style) and its pin: py-libp2p sends a
    Yamux window update after every read, so ten pings cost twenty more encrypted
    writes (the node reading each request, the client each answer); with the fix,
    none until half the window is owed. When the pin fails, py-libp2p has changed
    its policy: look again at the fix."""
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    from node_runtime.libp2p_fixes import window_updates_go_style

    window_updates_go_style()
    fixed = YamuxStream._auto_tune_and_send_window_update
    original = YamuxStream._olane_original_window_update
    send_update = YamuxStream.send_window_update
    sent: list[int] = []

    async def counting(self, increment: int, skip_lock: bool = False) -> None:
        sent.append(increment)
        await send_update(self, increment, skip_lock)

    async def body():
        counts = {}
        async with Node([Tool("o://seq")]) as node, Client() as client:
            ma = node.listen_addrs[0]
            YamuxStream.send_window_update = counting
            try:
                for name, policy in (("py-libp2p", original), ("fixed", fixed)):
                    YamuxStream._auto_tune_and_send_window_update = policy
                    await client.use("o://seq", "ping", via=ma, timeout=10)
                    sent.clear()
                    for _ in range(10):
                        assert await client.use("o://seq", "ping", via=ma, timeout=10) == {"message": "Pong!"}
                    counts[name] = len(sent)
            finally:
                YamuxStream.send_window_update = send_update
                YamuxStream._auto_tune_and_send_window_update = fixed
        return counts

    counts = run_trio(body)
    assert counts["py-libp2p"] >= 20
    assert counts["fixed"] == 0


def test_reads_served_from_read_ahead_bytes_let_other_tasks_run_every_serve_step(monkeypatch):
    """Fix 7 (libp2p_fixes.tcp_read_ahead): reads served from the bytes one socket read
    brought in pass through the scheduler once per SERVE_STEP bytes, so the Yamux read
    loop, taking a whole read-ahead in small reads, lets other tasks (the console's
    screen) run in between; without that step (SERVE_STEP beyond the read-ahead) it
    took them all in one go. The bytes come out whole and in order either way."""
    from libp2p.io.trio import TrioTCPStream

    from node_runtime import libp2p_fixes

    libp2p_fixes.tcp_read_ahead()
    payload = bytes(range(256)) * (libp2p_fixes.READ_AHEAD // 256)

    async def read_all(serve_step: int) -> tuple[bytes, int, int]:
        """(what came out, bytes the first socket read held, schedule points of the reader)"""
        monkeypatch.setattr(libp2p_fixes, "SERVE_STEP", serve_step)
        me = trio.lowlevel.current_task()

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with listeners[0], await trio.open_tcp_stream("127.0.0.1", port) as sender, \
                trio.open_nursery() as nursery:
            receiver = await listeners[0].accept()
            async with receiver:
                nursery.start_soon(sender.send_all, payload)  # (more than a socket buffer may hold)
                await trio.sleep(0.1)  # what fits is in the receiver's socket
                tcp = TrioTCPStream(receiver)
                out = [await tcp.read(1024)]  # the socket read: the rest is held
                held = len(tcp.__dict__.get("_olane_held") or b"")
                steps = TaskSteps(me)
                trio.lowlevel.add_instrument(steps)
                try:
                    while tcp.__dict__.get("_olane_held"):
                        out.append(await tcp.read(1024))
                finally:
                    trio.lowlevel.remove_instrument(steps)
                with trio.move_on_after(5):
                    while sum(map(len, out)) < len(payload):
                        out.append(await tcp.read(len(payload)))
        return b"".join(out), held, steps.count

    async def body():
        step = 8 * 1024
        stepped, held, points = await read_all(step)
        assert stepped == payload
        assert held > 4 * step  # (a loopback socket holds tens of KiB at least)
        assert points >= (held - 1024) // step - 1
        whole, held, points = await read_all(10 * libp2p_fixes.READ_AHEAD)
        assert whole == payload and held > 4 * step and points == 0

    run_trio(body, 30)


def test_yamux_locks_and_tcp_reads_cost_a_scheduler_pass_without_fixes_6_and_7():
    """Fixes 6 and 7 (libp2p_fixes.quick_yamux_locks, tcp_read_ahead) and their pins:
    py-libp2p guards each Yamux stream's window with a trio.Lock, whose acquisition
    lets every other runnable task run first even when it is free, and its TCP
    reads ask the socket for just the bytes wanted (a Noise message: a 2-byte
    length, then the body, two socket reads). With the fixes a free lock is taken
    at once (a held one still queues in order), one socket read serves both reads
    with the same bytes, and 20 streams at once on one connection still get every
    chunk in order (their tools take turns: server.SLICE_CHUNKS). When a pin fails, py-libp2p has changed: look again at the fix."""
    from libp2p.io.trio import TrioTCPStream
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    from node_runtime.libp2p_fixes import QuickLock, quick_yamux_locks, tcp_read_ahead

    class Items(Tool):
        address = "o://items"

        async def _tool_items(self, request: Request, count: int = 3):
            for i in range(count):
                yield {"i": i}

    async def yields(acquire) -> bool:
        """Whether `acquire()` goes through the scheduler (this task is stepped again)."""
        me = trio.lowlevel.current_task()

        steps = TaskSteps(me)
        trio.lowlevel.add_instrument(steps)
        try:
            await acquire()
        finally:
            trio.lowlevel.remove_instrument(steps)
        return steps.count > 0

    async def socket_reads(read) -> tuple[list[bytes], list[int]]:
        asked: list[int] = []
        receive_some = trio.SocketStream.receive_some

        async def counting(self, max_bytes=None):
            asked.append(max_bytes)
            return await receive_some(self, max_bytes)

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with listeners[0], await trio.open_tcp_stream("127.0.0.1", port) as sender:
            receiver = await listeners[0].accept()
            async with receiver:
                await sender.send_all(b"\x00\x62" + b"m" * 98)
                await trio.sleep(0.05)  # all 100 bytes in the receiver's socket
                tcp = TrioTCPStream(receiver)
                trio.SocketStream.receive_some = counting
                try:
                    got = [await read(tcp, 2), await read(tcp, 98)]
                finally:
                    trio.SocketStream.receive_some = receive_some
        return got, asked

    async def body():
        quick_yamux_locks()
        tcp_read_ahead()
        bare_stream = YamuxStream.__new__(YamuxStream)
        YamuxStream._olane_original_init(bare_stream, 1, None, True)
        assert type(bare_stream.window_lock) is trio.Lock  # the pin (fix 6)
        assert await yields(bare_stream.window_lock.acquire)
        quick = QuickLock()
        assert not await yields(quick.acquire)
        order = []

        async def waiter(tag: str) -> None:
            async with quick:
                order.append(tag)

        async with trio.open_nursery() as nursery:  # held: waiters queue and get it in turn
            nursery.start_soon(waiter, "a")
            await trio.sleep(0.01)
            nursery.start_soon(waiter, "b")
            await trio.sleep(0.01)
            assert order == []
            quick.release()
        assert order == ["a", "b"] and not quick.locked()

        bare_got, bare_asked = await socket_reads(TrioTCPStream._olane_original_read)
        fixed_got, fixed_asked = await socket_reads(TrioTCPStream.read)
        assert bare_asked == [2, 98]  # the pin (fix 7)
        assert len(fixed_asked) == 1 and fixed_got == bare_got == [b"\x00\x62", b"m" * 98]

        async with Node([Items()]) as node, Client() as client:
            ma = node.listen_addrs[0]
            got: dict[int, list] = {}

            async def call(n: int) -> None:
                got[n] = [c["i"] async for c in client.use_streaming("o://items", "items", {"count": 500},
                                                                     via=ma, timeout=20)]

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(call, n)
            assert all(got[n] == list(range(500)) for n in range(20))
            muxed = [c.muxed_conn for conns in node.host.get_network().get_connections_map().values() for c in conns]
            assert muxed and all(type(m.streams_lock) is QuickLock for m in muxed)
            assert gc.get_freeze_count() > 0  # node.freeze_startup_heap: the startup heap is out of full GC passes

    run_trio(body, 30)
