"""The runtime over real libp2p on 127.0.0.1: unary and streamed calls, errors,
pipelining, concurrency, cancellation, backpressure, limits and bad input."""
from __future__ import annotations

import time

import pytest
import trio

from node_runtime import Client, ErrorCode, Limits, Node, OlaneError, Request, StreamEnd, Tool, codec, tool_method
from node_runtime.framing import FrameDecoder, encode_varint, frame

from trio_helpers import NodeAndClient, run_trio


class Probe(Tool):
    """A tool whose methods record what happened to them."""

    address = "o://probe"

    def __init__(self) -> None:
        super().__init__()
        self.finally_at: float | None = None
        self.produced = 0

    async def _tool_get_all(self, request: Request):
        return {"items": [1, 2, 3]}

    async def _tool_count(self, request: Request, count: int = 10, size: int = 0):
        pad = "x" * size
        for i in range(1, count + 1):
            self.produced = i
            yield {"i": i, "pad": pad} if size else {"i": i}

    async def _tool_fail_after(self, request: Request, good: int = 3):
        for i in range(good):
            yield {"i": i + 1}
        raise OlaneError(ErrorCode.INVALID_STATE, f"failed after {good} chunks", {"at": good})

    async def _tool_endless(self, request: Request, delayMs: int = 10):
        try:
            i = 0
            while True:
                i += 1
                self.produced = i
                yield {"i": i}
                await trio.sleep(delayMs / 1000)
        finally:
            self.finally_at = time.monotonic()

    async def _tool_needs(self, request: Request, name: str, times: int = 1):
        return {"greeting": " ".join([f"hi {name}"] * times)}

    async def _tool_slow(self, request: Request, seconds: float = 5):
        await trio.sleep(seconds)
        return {"slept": seconds}

    async def _tool_with_final(self, request: Request):
        yield {"part": 1}
        yield StreamEnd({"size": 1, "sha256": "abc"})

    async def _tool_boom(self, request: Request):
        raise ValueError("tool blew up")

    def _private(self):  # not a tool method: never callable
        return "secret"


def test_unary_call_returns_the_data():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            assert await nc.client.use("o://probe", "get_all", via=nc.ma) == {"items": [1, 2, 3]}
            assert await nc.client.use("o://probe", "ping", via=nc.ma) == {"message": "Pong!"}

    run_trio(body)


def test_ten_thousand_chunks_arrive_in_order_with_sequences():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            call = nc.client.use_streaming("o://probe", "count", {"count": 10_000}, via=nc.ma)
            seqs, values = [], []
            async for response in call.responses():
                if not response.last:
                    seqs.append(response.sequence)
                    values.append(response.data["i"])
            assert seqs == list(range(1, 10_001))
            assert values == list(range(1, 10_001))
            assert call.final_response.sequence == 10_001 and call.final_response.chunks == 10_000
            assert call.chunks == 10_000

    run_trio(body)


def test_error_after_three_chunks_raises_after_yielding_them():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            got = []
            with pytest.raises(OlaneError) as info:
                async for chunk in nc.client.use_streaming("o://probe", "fail_after", {"good": 3}, via=nc.ma):
                    got.append(chunk["i"])
            assert got == [1, 2, 3]
            assert info.value.code == ErrorCode.INVALID_STATE and info.value.name == "INVALID_STATE"
            assert info.value.message == "failed after 3 chunks"
            assert info.value.details == {"at": 3}

    run_trio(body)


def test_unknown_method_missing_and_bad_parameters():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            use = nc.client.use
            for method in ("nope", "__class__", "_private", "__init__", "tool_get_all", "resolve"):
                with pytest.raises(OlaneError) as info:
                    await use("o://probe", method, via=nc.ma)
                assert info.value.code == 4011, method
            with pytest.raises(OlaneError) as info:
                await use("o://probe", "needs", {}, via=nc.ma)
            assert info.value.code == 4006 and "name" in info.value.message
            assert info.value.details["missing"] == ["name"]
            with pytest.raises(OlaneError) as info:
                await use("o://probe", "needs", {"name": "a", "times": "many"}, via=nc.ma)
            assert info.value.code == 4007
            assert await use("o://probe", "needs", {"name": "a", "times": 2}, via=nc.ma) == {"greeting": "hi a hi a"}
            with pytest.raises(OlaneError) as info:
                await use("o://probe", "boom", via=nc.ma)
            assert info.value.code == 4001 and info.value.message == "tool blew up"

    run_trio(body)


def test_generator_can_set_the_final_data():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            call = nc.client.use_streaming("o://probe", "with_final", via=nc.ma)
            assert [c async for c in call] == [{"part": 1}]
            assert call.final == {"size": 1, "sha256": "abc"}

    run_trio(body)


async def _raw_stream(nc: NodeAndClient, protocol: str = "/o/probe"):
    from libp2p.custom_types import TProtocol

    peer = await nc.client.peers.peer_at(nc.ma)
    return await nc.client.host.new_stream(peer, [TProtocol(protocol)])


async def _read_frames(stream, decoder: FrameDecoder, want: int) -> list[dict]:
    out: list[dict] = []
    while len(out) < want:
        for payload in decoder.feed(await stream.read(65536)):
            out.append(codec.decode(payload)[0])
    return out


def _request(rid: str, method: str, params: dict | None = None) -> bytes:
    return frame(codec.encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}))


def test_two_requests_pipelined_on_one_stream():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            stream = await _raw_stream(nc)
            await stream.write(_request("a", "count", {"count": 3}) + _request("b", "get_all"))
            frames = await _read_frames(stream, FrameDecoder(), 5)
            await stream.reset()
            by_id = {}
            for f in frames:
                by_id.setdefault(f["id"], []).append(f["result"])
            assert [r["data"] for r in by_id["a"]] == [{"i": 1}, {"i": 2}, {"i": 3}, {"message": ""}]
            assert by_id["a"][-1]["_last"] is True
            assert [r["data"] for r in by_id["b"]] == [{"items": [1, 2, 3]}]

    run_trio(body)


def test_fifty_concurrent_streams_on_one_connection():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            results: dict[int, list[int]] = {}

            async def one(k: int) -> None:
                results[k] = [c["i"] async for c in nc.client.use_streaming("o://probe", "count", {"count": 100 + k}, via=nc.ma)]

            async with trio.open_nursery() as nursery:
                for k in range(50):
                    nursery.start_soon(one, k)
            assert len(results) == 50
            for k, values in results.items():
                assert values == list(range(1, 101 + k))
            assert len(nc.client.host.get_network().get_connections(nc.node.host.get_id())) == 1

    run_trio(body, timeout=60)


def test_consumer_break_stops_the_generator_within_a_second():
    async def body():
        probe = Probe()
        async with NodeAndClient([probe]) as nc:
            got = []
            async for chunk in nc.client.use_streaming("o://probe", "endless", {"delayMs": 5}, via=nc.ma):
                got.append(chunk["i"])
                if len(got) == 5:
                    break
            broke_at = time.monotonic()
            while probe.finally_at is None and time.monotonic() - broke_at < 1.0:
                await trio.sleep(0.01)
            assert probe.finally_at is not None, "the generator's finally did not run within 1 s"
            assert probe.finally_at - broke_at < 1.0
            metrics = await nc.client.use("o://probe", "get_metrics", via=nc.ma)
            assert metrics["activeRequests"] == 0, metrics
            produced = probe.produced
            await trio.sleep(0.1)
            assert probe.produced == produced  # nothing runs any more

    run_trio(body)


def test_cancelling_the_caller_stops_the_tool():
    async def body():
        probe = Probe()
        async with NodeAndClient([probe]) as nc:
            with trio.move_on_after(0.3):
                async for _ in nc.client.use_streaming("o://probe", "endless", {"delayMs": 5}, via=nc.ma):
                    pass
            with trio.fail_after(1):
                while probe.finally_at is None:
                    await trio.sleep(0.01)
            assert (await nc.client.use("o://probe", "get_metrics", via=nc.ma))["activeRequests"] == 0

    run_trio(body)


def test_first_frame_deadline_raises_timeout_and_frees_the_request():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            started = time.monotonic()
            with pytest.raises(OlaneError) as info:
                await nc.client.use("o://probe", "slow", {"seconds": 30}, via=nc.ma, timeout=0.3)
            assert info.value.code == ErrorCode.TIMEOUT
            assert time.monotonic() - started < 5
            with trio.fail_after(2):
                while (await nc.client.use("o://probe", "get_metrics", via=nc.ma))["activeRequests"]:
                    await trio.sleep(0.05)

    run_trio(body)


def test_malformed_json_and_oversize_frames_leave_the_node_answering():
    async def body():
        limits = Limits(max_frame_bytes=4096)
        async with NodeAndClient([Probe()], limits=limits) as nc:
            # malformed JSON: an error frame, and the same stream keeps working
            stream = await _raw_stream(nc)
            await stream.write(frame(b'{"jsonrpc": "2.0", "id": "x", "method": ') + _request("p", "ping"))
            decoder = FrameDecoder()
            bad, good = await _read_frames(stream, decoder, 2)
            assert bad["result"]["error"]["code"] == ErrorCode.INVALID_REQUEST
            assert bad["result"]["_last"] is True
            assert good["id"] == "p" and good["result"]["data"] == {"message": "Pong!"}
            # not an object, and a request with no method
            await stream.write(frame(b"[1,2]") + frame(b'{"id": "q"}'))
            notobj, nomethod = await _read_frames(stream, decoder, 2)
            assert notobj["result"]["error"]["code"] == nomethod["result"]["error"]["code"] == 4009
            assert nomethod["id"] == "q"
            await stream.reset()
            # oversize frame: refused from its length prefix alone, then the stream is reset
            stream = await _raw_stream(nc)
            await stream.write(encode_varint(10_000_000) + b"{" * 1000)
            frames = []
            try:
                with trio.fail_after(5):
                    while True:
                        frames += [codec.decode(p)[0] for p in FrameDecoder().feed(await stream.read(65536))]
            except Exception:
                pass
            assert frames and frames[0]["result"]["error"]["code"] == 4009
            assert "exceeds" in frames[0]["result"]["error"]["message"]
            # the node still answers
            assert await nc.client.use("o://probe", "ping", via=nc.ma, timeout=5) == {"message": "Pong!"}

    run_trio(body)


def test_slow_consumer_slows_the_generator():
    """Backpressure: with 64 KiB chunks the producer can run ahead of the consumer by at
    most what the Yamux window (16 MiB at most) and our write buffer hold."""

    async def body():
        probe = Probe()
        async with NodeAndClient([probe]) as nc:
            received = 0
            ahead = []
            async for _ in nc.client.use_streaming("o://probe", "count", {"count": 2000, "size": 65536}, via=nc.ma):
                received += 1
                if received % 100 == 0:
                    await trio.sleep(0.2)  # a slow reader
                    ahead.append(probe.produced - received)
                if received == 600:
                    break
            bound = (16 * 1024 * 1024 + 2 * Limits().write_buffer_bytes) // 65536 + 8
            assert max(ahead) <= bound, (max(ahead), bound)
            assert probe.produced < 2000  # the producer did not run to the end on its own

    run_trio(body, timeout=60)


def test_a_consumer_pausing_longer_than_yamux_patience_keeps_its_stream():
    """py-libp2p kills a stream whose writer waits over 5 s for window room; ours waits itself."""

    async def body():
        async with NodeAndClient([Probe()]) as nc:
            got = 0
            async for _ in nc.client.use_streaming("o://probe", "count", {"count": 1200, "size": 65536}, via=nc.ma):
                got += 1
                if got == 10:
                    await trio.sleep(6)
            assert got == 1200

    run_trio(body, timeout=60)


def test_msgpack_between_our_peers_json_otherwise():
    class Plain(Tool):  # answers identify without codecs, like a TypeScript node
        address = "o://plain"

        async def _tool_identify(self, request):
            return {"address": "o://plain"}

        async def _tool_bytes(self, request):
            return {"raw": b"\x00\x01"}

    async def body():
        async with NodeAndClient([Probe(), Plain()]) as nc:
            assert await nc.client.use("o://probe", "get_all", via=nc.ma) == {"items": [1, 2, 3]}
            assert await nc.client.use("o://plain", "ping", via=nc.ma) == {"message": "Pong!"}
            codecs = {proto: c for (_, proto), c in nc.client.peers.codecs_learned().items()}
            assert codecs == {"/o/probe": "msgpack", "/o/plain": "json"}
            # bytes travel raw in msgpack, as base64 text in JSON
            assert await nc.client.use("o://plain", "bytes", via=nc.ma, codec="msgpack") == {"raw": b"\x00\x01"}
            assert await nc.client.use("o://plain", "bytes", via=nc.ma) == {"raw": "AAE="}
            # the server answers in the request's codec
            stream = await _raw_stream(nc)
            await stream.write(frame(codec.encode({"jsonrpc": "2.0", "id": "m", "method": "ping", "params": {}}, "msgpack")))
            decoder = FrameDecoder()
            while not (payloads := decoder.feed(await stream.read(65536))):
                pass
            assert codec.detect(payloads[0]) == "msgpack"
            await stream.reset()

    run_trio(body)


def test_client_limits_streams_per_connection_with_a_clear_error():
    async def body():
        async with Node([Probe()]) as node, Client(limits=Limits(max_streams_per_connection=3)) as client:
            ma = node.listen_addrs[0]
            calls = [client.use_streaming("o://probe", "endless", {"delayMs": 50}, via=ma) for _ in range(4)]
            for call in calls[:3]:
                await call.start()
            with pytest.raises(OlaneError) as info:
                await calls[3].start()
            assert info.value.code == ErrorCode.CONNECTION_LIMIT_REACHED
            for call in calls[:3]:
                await call.aclose()
            await calls[3].start()  # a slot is free again
            await calls[3].aclose()

    run_trio(body)


def test_unreachable_and_unknown_addresses():
    async def body():
        async with NodeAndClient([Probe()]) as nc:
            with pytest.raises(OlaneError) as info:
                await nc.client.use("o://elsewhere", "ping", via=nc.ma, timeout=5)
            assert info.value.code == ErrorCode.NOT_FOUND
            from node_runtime.host import peer_id_for_seed

            port_gone = "/ip4/127.0.0.1/tcp/1/p2p/" + peer_id_for_seed("nobody listens here")
            with pytest.raises(OlaneError) as info:
                await nc.client.use("o://probe", "ping", via=port_gone, timeout=5)
            assert info.value.code == ErrorCode.FAILED_TO_DIAL_TARGET

    run_trio(body)


def test_handshake_lists_methods_with_metadata():
    class Described(Tool):
        address = "o://described"

        @tool_method("Stream n items", risk="medium")
        async def _tool_items(self, request, count: int = 10, mode: "str" = "fast"):
            yield {}

    async def body():
        async with NodeAndClient([Described()]) as nc:
            answer = await nc.client.use("o://described", "handshake", via=nc.ma)
            assert answer["type"] == "handshake"
            methods = answer["result"]["methods"]
            assert set(answer["result"]["tools"]) >= {"items", "ping", "identify", "handshake", "get_metrics"}
            items = methods["items"]
            assert items["description"] == "Stream n items"
            assert items["performance"]["supportsStreaming"] is True
            assert items["approvalMetadata"]["riskLevel"] == "medium"
            assert items["parameters"][0] == {"name": "count", "type": "number", "description": "",
                                              "required": False, "defaultValue": 10}
            one = await nc.client.use("o://described", "handshake", {"tool": "items"}, via=nc.ma)
            assert list(one["result"]["methods"]) == ["items"]
            ident = await nc.client.use("o://described", "identify", via=nc.ma)
            assert ident["address"] == "o://described" and "msgpack" in ident["codecs"]
            assert ident["transports"] == [nc.ma]

    run_trio(body)


def test_a_node_stops_promptly_while_a_flat_out_stream_fills_the_connection():
    """Cancelling a node and its client mid-firehose: the node's writes are blocked on a
    peer that no longer reads (TCP buffer full); stopping must still end at once."""

    async def body():
        stopped_in = None
        async with trio.open_nursery() as outer:
            async def run():
                nonlocal stopped_in
                async with Client() as client, Node([Probe()]) as node:
                    async def consume():
                        async for _ in client.use_streaming("o://probe", "count", {"count": 10**7, "size": 100},
                                                            via=node.listen_addrs[0]):
                            pass
                    async with trio.open_nursery() as inner:
                        inner.start_soon(consume)
                        await trio.sleep(0.5)
                        started = trio.current_time()
                        try:
                            outer.cancel_scope.cancel()
                            await trio.sleep_forever()
                        finally:
                            stopped_in = started

            outer.start_soon(run)
        return trio.current_time() - stopped_in

    took = run_trio(body, timeout=20)  # it hung forever before shielded writes were bounded
    assert took < 10
