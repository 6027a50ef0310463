"""Bidirectional calls (docs/protocol-extensions.md, "Input chunks") over real
libp2p nodes on 127.0.0.1: input and answer in order, client streaming, bounded
memory both ways, clear errors, and nothing new toward a peer that did not ask."""
from __future__ import annotations

import orjson
import trio

from node_runtime import Client, ErrorCode, Incoming, Limits, OlaneError, Request, Tool, tool_method
from node_runtime.framing import FrameDecoder, frame
from tool_library.demo import DemoTool

from trio_helpers import NodeAndClient, run_trio


class Holding(Tool):
    """Takes `take` chunks, then waits until released, then sums the rest."""

    address = "o://holding"

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.incoming: Incoming | None = None

    @tool_method("sum of the sizes of the chunks, after a pause", incoming=True)
    async def _tool_hold(self, request: Request, take: int = 5) -> dict:
        self.incoming = request.incoming
        n = size = 0
        async for data in request.incoming:
            n += 1
            size += len(data)
            if n == take:
                await self.release.wait()
        return {"chunks": n, "bytes": size}


def test_echo_and_sum_streams_in_order_and_clear_errors():
    async def body():
        async with NodeAndClient([DemoTool()]) as nc:
            client, ma = nc.client, nc.ma
            n = 10_000
            got = []
            async with client.open_bidirectional("o://demo", "echo_stream", {}, via=ma, timeout=60) as call:
                async def send():
                    for i in range(1, n + 1):
                        await call.send({"i": i})
                    await call.end()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    async for response in call.responses():
                        if not response.last:
                            got.append((response.sequence, response.data))
            assert [s for s, _ in got] == list(range(1, n + 1))  # the answer's own _sequence
            assert [d for _, d in got] == [{"count": i, "data": {"i": i}} for i in range(1, n + 1)]
            assert call.final == {"count": n} and call.sent == n

            # client streaming: the answer comes once the input ends
            async with client.open_bidirectional("o://demo", "sum_stream", {}, via=ma, timeout=20) as call:
                for value in [1, 2.5, {"value": 3}, -1]:
                    await call.send(value)
                await call.end()
                assert await call.result() == {"total": 5.5, "count": 4}
            # the wait for the answer starts again at each send: a slow sender is not a late answer
            async with client.open_bidirectional("o://demo", "sum_stream", {}, via=ma, first_frame_timeout=0.6,
                                                 idle_timeout=0.6, timeout=20) as call:
                async with trio.open_nursery() as nursery:
                    async def slow_sender():
                        for _ in range(5):
                            await trio.sleep(0.2)
                            await call.send(1)
                        await call.end()

                    nursery.start_soon(slow_sender)
                    assert await call.result() == {"total": 5, "count": 5}  # read while it sends
            # a plain call of a bidirectional method: no input
            assert await client.use("o://demo", "sum_stream", {}, via=ma, timeout=10) == {"total": 0, "count": 0}
            # a bad chunk fails that call with the tool's error
            async with client.open_bidirectional("o://demo", "sum_stream", {}, via=ma, timeout=20) as call:
                await call.send("x")
                await call.end()
                try:
                    await call.result()
                    raise AssertionError("no error")
                except OlaneError as exc:
                    assert exc.code == ErrorCode.INVALID_PARAMETERS and "not a number" in exc.message
            # input to a method that takes none: a clear error, and the node goes on
            try:
                async with client.open_bidirectional("o://demo", "stream_items", {"count": 3}, via=ma,
                                                     timeout=20) as call:
                    await call.send(1)
                    await call.result()
                raise AssertionError("no error")
            except OlaneError as exc:
                assert exc.code == ErrorCode.INVALID_ACTION and "takes no input" in exc.message
            # sending after the end is refused
            async with client.open_bidirectional("o://demo", "sum_stream", {}, via=ma, timeout=20) as call:
                await call.end()
                try:
                    await call.send(1)
                    raise AssertionError("sent after end")
                except OlaneError as exc:
                    assert exc.code == ErrorCode.INVALID_STATE
                assert await call.result() == {"total": 0, "count": 0}
            meta = (await client.use("o://demo", "handshake", {"tool": "echo_stream"}, via=ma))["result"]["methods"]
            assert meta["echo_stream"]["performance"] == {"supportsStreaming": True, "supportsInput": True}
            assert meta["echo_stream"]["parameters"] == []  # `incoming` is not a parameter
            assert await client.use("o://demo", "ping", via=ma) == {"message": "Pong!"}

    run_trio(body, timeout=60)


def test_a_slow_tool_keeps_the_callers_memory_bounded_then_gets_everything():
    """The tool stops reading after 5 chunks: the caller's sends stop short of what
    it wants to send (its write buffer, the node's queue and the Yamux window are
    bounded; py-libp2p grows that window to 16 MiB a stream); released, every
    chunk arrives."""
    chunk = "x" * 16_000
    total = 1_700  # 27 MB of input

    async def body():
        tool = Holding()
        async with NodeAndClient([tool], limits=Limits(input_queue_chunks=16)) as nc:
            async with nc.client.open_bidirectional("o://holding", "hold", {"take": 5}, via=nc.ma,
                                                    timeout=60) as call:
                async def send():
                    for _ in range(total):
                        await call.send(chunk)
                    await call.end()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    # wait until the sender is stuck: no progress for 0.5 s
                    last, still = -1, 0
                    while still < 10:
                        await trio.sleep(0.05)
                        still = still + 1 if call.sent == last else 0
                        last = call.sent
                    stuck_at = call.sent
                    writer = call.writer
                    assert writer.pending_bytes <= writer.buffer_bytes + len(chunk) + 100  # one frame over, at most
                    assert tool.incoming.queued <= 16
                    # in flight: the node's queue, one read, the Yamux window (16 MiB), our write buffer
                    assert stuck_at * len(chunk) < 19 * 2**20, stuck_at
                    tool.release.set()
                    assert await call.result() == {"chunks": total, "bytes": total * len(chunk)}
            assert stuck_at < total

            # a caller that leaves while its input holds the node's reader: the tool is stopped
            tool.release = trio.Event()
            async with nc.client.open_bidirectional("o://holding", "hold", {"take": 1}, via=nc.ma,
                                                    timeout=30) as call:
                for _ in range(40):
                    await call.send("x")
                while tool.incoming is None or tool.incoming.queued < 16:
                    await trio.sleep(0.02)
            # left without end(): the stream is reset
            while nc.node.metrics.active:
                await trio.sleep(0.05)
            assert tool.incoming.closed

    run_trio(body, timeout=60)


def test_a_peer_that_did_not_negotiate_gets_nothing_new():
    """A caller that sends TypeScript's envelope (no `_input`) to a bidirectional
    method gets exactly the plain frames; input frames for an id that did not ask are
    dropped, and a client refuses to send input to a peer whose identify lists none."""
    from libp2p.custom_types import TProtocol

    class OldTool(Tool):  # a node of ours before bidirectional calls: identify lists no "input"
        address = "o://old"

        @tool_method("identify, as an older node answered it")
        async def _tool_identify(self, request: Request) -> dict:
            return {"address": "o://old", "codecs": ["json"], "frames": ["batch"]}

    async def body():
        async with NodeAndClient([DemoTool()]) as nc, NodeAndClient([OldTool()]) as old:
            peer = await nc.client.peers.peer_at(nc.ma)
            stream = await nc.client.host.new_stream(peer, [TProtocol("/o/demo")])
            request = {"jsonrpc": "2.0", "id": "ts-1", "method": "route",
                       "params": {"_connectionId": "c", "_requestMethod": "route", "_callerAddress": "o://ts",
                                  "_isStreaming": True, "address": "o://demo",
                                  "payload": {"method": "echo_stream", "params": {"_isStreaming": True}}}}
            stray = {"jsonrpc": "2.0", "id": "ts-1", "method": "_input", "params": {"data": 1, "_sequence": 1}}
            await stream.write(frame(orjson.dumps(request)) + frame(orjson.dumps(stray)))
            decoder = FrameDecoder()
            payloads: list[bytes] = []
            with trio.fail_after(10):
                while not payloads:
                    payloads += decoder.feed(await stream.read(1 << 16))
            await stream.reset()
            assert payloads == [orjson.dumps({"jsonrpc": "2.0", "id": "ts-1", "result": {
                "id": "ts-1", "data": {"count": 0}, "success": True, "_last": True, "_isStreaming": False,
                "_requestMethod": "route", "_connectionId": "c", "_sequence": 1, "_chunks": 0}})]
            try:
                async with old.client.open_bidirectional("o://old", "anything", {}, via=old.ma, timeout=10):
                    raise AssertionError("opened")
            except OlaneError as exc:
                assert exc.code == ErrorCode.NOT_IMPLEMENTED and "input" in exc.message

    run_trio(body, timeout=30)
