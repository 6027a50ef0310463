"""Live streams over real libp2p (docs/protocol-extensions.md, "Live streams"):
resumption after the caller's connection is killed, taps (fast and slow), shared
streams, and who may do what."""
from __future__ import annotations

import pytest
import trio

from node_runtime import Client, ErrorCode, Limits, Node, OlaneError, Request, StreamingCall, Tool, tool_method
from tool_library.metrics import MetricsTool

from trio_helpers import trio_test

ADDRESS = "o://live"


class LiveTool(Tool):
    address = ADDRESS

    @tool_method("Stream 1..count, pausing `delayMs` before each chunk after `pauseAfter` (0: never).")
    async def _tool_count(self, request: Request, count: int = 10, delayMs: int = 0, pauseAfter: int = 0):
        for i in range(1, count + 1):
            if delayMs and i > pauseAfter:
                await trio.sleep(delayMs / 1000)
            yield {"n": i}

    @tool_method("Stream `count` chunks of one size (n from 1001 on, `pad` characters, or bytes with `blob`), "
                 "then hold the stream open.")
    async def _tool_padded(self, request: Request, count: int = 10, pad: int = 100, blob: bool = False):
        for i in range(1, count + 1):
            yield {"n": 1000 + i, "pad": b"x" * pad if blob else "x" * pad}
        await trio.sleep_forever()

    @tool_method("Wait until the stream has `taps` taps, then stream 1..count as fast as it can.")
    async def _tool_flood_when_tapped(self, request: Request, count: int = 1000, taps: int = 1, pad: int = 0):
        record = request.node.streams.record_of(request.id)
        while len(record.taps) < taps:
            await trio.sleep(0.01)
        padding = "x" * pad
        for i in range(1, count + 1):
            yield {"n": i, "pad": padding}


class IdentifyCounted(LiveTool):
    """LiveTool counting the identify requests it answers; `streams=False`: its identify
    lists no live streams (as a TypeScript node's), and it counts the calls that ran."""

    def __init__(self, streams: bool = True) -> None:
        super().__init__()
        self.streams = streams
        self.identifies = 0
        self.counts = 0

    async def _tool_identify(self, request: Request):
        self.identifies += 1
        info = await super()._tool_identify(request)
        if not self.streams:
            del info["streams"]
        return info

    async def _tool_count(self, request: Request, count: int = 10, delayMs: int = 0, pauseAfter: int = 0):
        self.counts += 1
        async for chunk in super()._tool_count(request, count, delayMs, pauseAfter):
            yield chunk


async def _stream_id(client, ma, method: str) -> str:
    with trio.fail_after(5):
        while True:
            listed = (await client.use(ADDRESS, "list_streams", via=ma))["streams"]
            for entry in listed:
                if entry["method"] == method:
                    return entry["streamId"]
            await trio.sleep(0.01)


@trio_test(timeout=30)
async def test_a_resumable_stream_survives_its_connection_and_refuses_others():
    limits = Limits(resume_buffer_chunks=50)
    async with Node([LiveTool()], limits=limits) as node, Client(seed="live-owner") as owner, \
            Client(seed="live-stranger") as stranger:
        ma = node.listen_addrs[0]
        # the caller's connection is killed mid-stream; the client resumes by itself: 1..N once each
        call = owner.use_streaming(ADDRESS, "count", {"count": 300, "delayMs": 2}, via=ma, resumable=True)
        seen = []
        async for chunk in call:
            seen.append(chunk["n"])
            if chunk["n"] in (40, 170):
                call.abort_connection()  # closes the TCP socket under the caller's connection
        assert seen == list(range(1, 301))
        assert call.resumes == 2 and call.stream_id.startswith("s-")
        assert call.final_response.chunks == 300

        # a caller that leaves early (break) ends its resumable stream: nothing is kept for it
        call = owner.use_streaming(ADDRESS, "count", {"count": 500, "delayMs": 1}, via=ma, resumable=True)
        async for chunk in call:
            if chunk["n"] == 5:
                break
        with trio.fail_after(5):
            while node.streams.active:
                await trio.sleep(0.01)

        # a stream whose caller's connection is gone waits (suspended) for a resume
        call = StreamingCall(owner, ADDRESS, "count", {"count": 500, "delayMs": 1}, via=ma, first_frame_timeout=5,
                             idle_timeout=5, codec=None)
        call.resumable = True  # as ResumableCall asks, without resuming by itself
        got = []
        stream_id = None
        async for response in call.responses():
            stream_id = stream_id or response.extra("_streamId")
            got.append(response.sequence)
            if len(got) == 60:
                call.abort_connection()
                break
        with trio.fail_after(5):
            while not any(e.get("suspended") for e in node.streams.listing(owner.peer_id)):
                await trio.sleep(0.01)
        # another peer may neither resume nor tap it, nor see it listed
        for method, params in (("resume", {"streamId": stream_id, "after": 60}), ("tap", {"streamId": stream_id})):
            try:
                await stranger.use_streaming(ADDRESS, method, params, via=ma).result()
                raise AssertionError(f"{method} by a stranger was accepted")
            except OlaneError as exc:
                assert exc.code == ErrorCode.NOT_AUTHORIZED, exc
        assert (await stranger.use(ADDRESS, "list_streams", via=ma))["streams"] == []
        # after older than the ring (50 chunks) -> 4010 naming the oldest held
        try:
            await owner.use_streaming(ADDRESS, "resume", {"streamId": stream_id, "after": 1}, via=ma).result()
            raise AssertionError("a resume past the buffer was accepted")
        except OlaneError as exc:
            assert exc.code == ErrorCode.INVALID_STATE and exc.details["oldestSequence"] > 2, exc
        # unknown id -> 4002
        try:
            await owner.use_streaming(ADDRESS, "resume", {"streamId": "s-nope", "after": 0}, via=ma).result()
            raise AssertionError("an unknown stream was resumed")
        except OlaneError as exc:
            assert exc.code == ErrorCode.NOT_FOUND
        # the owner resumes by hand: the rest, once each
        resumed = owner.use_streaming(ADDRESS, "resume", {"streamId": stream_id, "after": len(got)}, via=ma)
        rest = [r.sequence async for r in resumed.responses() if not r.last]
        assert got + rest == list(range(1, 501))


@trio_test(timeout=30)
async def test_resumable_and_shared_calls_use_what_the_first_call_learned_of_the_peer():
    """One identify per peer: a resumable or shared call after a plain one asks none of
    its own, with a chosen codec too; toward a node whose identify lists no live
    streams it is refused before the request goes out."""
    tool, plain = IdentifyCounted(), IdentifyCounted(streams=False)
    async with Node([tool]) as node, Node([plain]) as other, Client(seed="features-owner") as owner:
        ma = node.listen_addrs[0]
        with trio.fail_after(15):
            assert [c["n"] async for c in owner.use_streaming(ADDRESS, "count", {"count": 2}, via=ma)] == [1, 2]
            assert tool.identifies == 1
            for extra in ({"resumable": True}, {"share": "k"}, {"resumable": True, "codec": "json"}):
                assert [c["n"] async for c in owner.use_streaming(ADDRESS, "count", {"count": 2}, via=ma,
                                                                  **extra)] == [1, 2]
            assert tool.identifies == 1
            for extra in ({"resumable": True}, {"share": "k"}):
                try:
                    async for _ in owner.use_streaming(ADDRESS, "count", {"count": 2}, via=other.listen_addrs[0],
                                                       **extra):
                        pass
                    raise AssertionError(f"{extra} was sent to a node that does not list it")
                except OlaneError as exc:
                    assert exc.code == ErrorCode.NOT_IMPLEMENTED and exc.details["feature"] in ("resume", "share")
            assert plain.identifies == 1 and plain.counts == 0


@trio_test(timeout=30)
async def test_one_peer_has_at_most_max_resumable_streams_per_peer_held():
    """Suspended streams count: the peer's next one gets 4016, another peer is served,
    and stopping one makes room."""
    async with Node([LiveTool()], limits=Limits(max_resumable_streams_per_peer=2)) as node, \
            Client(seed="cap-owner") as owner, Client(seed="cap-other") as other:
        ma = node.listen_addrs[0]

        async def started(client) -> tuple[StreamingCall, str]:
            call = StreamingCall(client, ADDRESS, "count", {"count": 100_000, "delayMs": 5}, via=ma,
                                 first_frame_timeout=5, idle_timeout=5, codec=None)
            call.resumable = True  # as ResumableCall asks, without resuming by itself
            await call.start()
            first = await call.next_response()
            return call, first.extra("_streamId")

        with trio.fail_after(15):
            held = [await started(owner), await started(owner)]
            held[0][0].abort_connection()  # both its streams' caller is gone: suspended, still held
            while sum(1 for e in node.streams.listing(owner.peer_id) if e.get("suspended")) < 2:
                await trio.sleep(0.01)
            try:
                await started(owner)
                raise AssertionError("a third resumable stream was held for the peer")
            except OlaneError as exc:
                assert exc.code == ErrorCode.CONNECTION_LIMIT_REACHED and exc.details == {"limit": 2}, exc
                assert "the limit per peer" in exc.message
            call, _ = await started(other)  # another peer is served
            await call.aclose()
            await owner.use(ADDRESS, "stop_stream", {"streamId": held[0][1]}, via=ma)
            call, _ = await started(owner)  # room again
            await call.aclose()
            await owner.use(ADDRESS, "stop_stream", {"streamId": held[1][1]}, via=ma)


@pytest.mark.parametrize("wire, blob", [("msgpack", False), ("json", True)])
@trio_test(timeout=30)
async def test_the_replay_ring_holds_resume_buffer_bytes_of_chunks_as_the_caller_reads_them(wire, blob):
    """`resume_buffer_bytes` counts each chunk's data in the caller's codec (msgpack, where
    a JSON count would hold fewer; bytes in JSON, as the base64 text it is sent as): a
    resume reaches back exactly that far."""
    from node_runtime import codec

    budget = 20_000
    chunk = {"n": 1001, "pad": b"x" * 200 if blob else "x" * 200}
    size = len(codec.encode(chunk, wire))
    if wire == "msgpack":
        assert size < len(codec.encode(chunk, "json"))
    async with Node([LiveTool()], limits=Limits(resume_buffer_bytes=budget)) as node, \
            Client(seed="ring-owner", codec=wire) as owner:
        ma = node.listen_addrs[0]
        call = StreamingCall(owner, ADDRESS, "padded", {"count": 300, "pad": 200, "blob": blob}, via=ma,
                             first_frame_timeout=5, idle_timeout=5, codec=None)
        call.resumable = True
        stream_id = None
        with trio.fail_after(10):
            async for response in call.responses():
                stream_id = stream_id or response.extra("_streamId")
                if response.sequence == 300:
                    break
        oldest = 300 - budget // size + 1  # the newest chunks that fit in the budget
        with trio.fail_after(10):
            try:
                await owner.use_streaming(ADDRESS, "resume", {"streamId": stream_id, "after": oldest - 2},
                                          via=ma).result()
                raise AssertionError("a resume past the ring was accepted")
            except OlaneError as exc:
                assert exc.code == ErrorCode.INVALID_STATE and exc.details["oldestSequence"] == oldest, exc
            resumed = owner.use_streaming(ADDRESS, "resume", {"streamId": stream_id, "after": oldest - 1}, via=ma)
            got = []
            async for response in resumed.responses():
                got.append(response.sequence)
                if response.sequence == 300:
                    break
        assert got == list(range(oldest, 301))
        await owner.use(ADDRESS, "stop_stream", {"streamId": stream_id}, via=ma)


@trio_test(timeout=40)
async def test_taps_copy_a_stream_and_a_slow_tap_only_loses_its_own_chunks():
    total = 100_000
    # "fast" taps read faster than the stream's own caller: they ask for batched frames, the caller
    # does not (all of it shares this process's one thread, so equal readers would tie)
    async with Node([LiveTool()], limits=Limits(tap_queue_chunks=1024)) as node, \
            Client(seed="tap-owner", batch=False) as owner:
        ma = node.listen_addrs[0]
        node.streams.admins.add(owner.peer_id)
        results: dict[str, dict] = {}
        original_done = trio.Event()

        async def original():
            # 100,000 x ~330 B: more than the slow tap's connection holds (a 16 MiB Yamux window)
            call = owner.use_streaming(ADDRESS, "flood_when_tapped", {"count": total, "taps": 3, "pad": 300}, via=ma)
            n = 0
            async for response in call.responses():
                if not response.last:
                    n += 1
            results["original"] = {"received": n, "chunks": call.final_response.chunks}
            original_done.set()

        async def tap(name: str, stream_id: str, slow: bool):
            async with Client() as watcher:  # each tap its own connection: a slow one holds only its own window
                node.streams.admins.add(watcher.peer_id)
                call = watcher.use_streaming(ADDRESS, "tap", {"streamId": stream_id}, via=ma)
                received = dropped = 0
                sequences_in_order = True
                last = 0
                async for response in call.responses():
                    extra = response.extra("_dropped") or 0
                    dropped += extra
                    if response.last:
                        break
                    received += 1
                    if response.sequence != last + 1 + extra:
                        sequences_in_order = False
                    last = response.sequence
                    if slow and received == 1:
                        await original_done.wait()  # reads nothing more until the original is done
                results[name] = {"received": received, "dropped": dropped, "in_order": sequences_in_order,
                                 "chunks": call.final_response.chunks}

        async with trio.open_nursery() as nursery:
            nursery.start_soon(original)
            stream_id = await _stream_id(owner, ma, "flood_when_tapped")
            for name, slow in (("fast1", False), ("fast2", False), ("slow", True)):
                nursery.start_soon(tap, name, stream_id, slow)
        assert results["original"] == {"received": total, "chunks": total}
        for name in ("fast1", "fast2"):
            assert results[name] == {"received": total, "dropped": 0, "in_order": True, "chunks": total}, name
        slow = results["slow"]
        assert slow["dropped"] > 0 and slow["in_order"]
        assert slow["received"] + slow["dropped"] == total


@trio_test(timeout=20)
async def test_a_shared_metrics_watch_runs_one_generator_for_three_joiners():
    async with Node([MetricsTool()]) as node, Client() as a, Client() as b, Client() as c:
        ma = node.listen_addrs[0]
        params = {"intervalMs": 50, "count": 8}
        got: dict[str, list] = {}

        async def join(name, client, delay):
            await trio.sleep(delay)
            call = client.use_streaming("o://metrics", "watch", params, via=ma, share="dashboard")
            got[name] = [chunk["sample"] async for chunk in call]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(join, "a", a, 0)
            with trio.fail_after(5):
                while not node.streams.active:
                    await trio.sleep(0.01)
            nursery.start_soon(join, "b", b, 0)
            nursery.start_soon(join, "c", c, 0)
            with trio.fail_after(5):
                while not any(r.producer and len(r.producer.sinks) == 3 for r in node.streams.active.values()):
                    await trio.sleep(0.005)
            listed = node.streams.listing(node.peer_id)
            assert len(listed) == 1 and listed[0]["readers"] == 3 and listed[0]["share"] == "dashboard"
        # one generator: every joiner saw the same samples from its join point to the end
        assert got["a"] == list(range(1, 9))
        for name in "bc":
            assert got[name] == got["a"][-len(got[name]):] and len(got[name]) >= 1
        assert not node.streams.active


def test_cli_resumable_streams_list_and_tap():
    import json
    import subprocess
    import threading

    from node_runtime.host import peer_id_for_seed
    from process_helpers import OLANE, olane, start_node, stop_process

    node, ma = start_node("--tools", "demo", "--admin", peer_id_for_seed("cli-admin"))
    caller = None
    try:
        caller = subprocess.Popen([OLANE, "stream", ma, "stream_items", "--params", '{"count": 3000, "delayMs": 10}',
                                   "--seed", "cli-owner", "--resumable"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.append(caller.stderr.readline()), daemon=True)
        reader.start()
        reader.join(30)
        assert said and said[0].startswith("resumable as s-"), said
        stream_id = said[0].split()[-1]
        listed = json.loads(olane("streams", ma, "--seed", "cli-admin", "--json", timeout=30).stdout)
        assert [(e["streamId"], e["method"], e["resumable"], e["callerPeerId"]) for e in listed] == [
            (stream_id, "stream_items", True, peer_id_for_seed("cli-owner"))]
        tap = subprocess.Popen([OLANE, "tap", ma, stream_id, "--seed", "cli-admin"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines: list[dict] = []

        def read_some() -> None:
            for line in tap.stdout:
                lines.append(json.loads(line))
                if len(lines) == 20:
                    return

        reader = threading.Thread(target=read_some, daemon=True)
        reader.start()
        reader.join(30)
        stop_process(tap)
        seqs = [x["seq"] for x in lines]
        assert len(seqs) == 20 and seqs == list(range(seqs[0], seqs[0] + 20))  # the stream's own sequences
    finally:
        if caller is not None:
            stop_process(caller)
        stop_process(node)
