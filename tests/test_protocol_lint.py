"""A peer that breaks the protocol (frames after the final one, as TypeScript tools
failing mid-stream do): the client ignores them but counts them, and the console's
record reports them."""
from __future__ import annotations

import trio

from console.core.stream_store import StreamRecord
from node_runtime import Client, Node, codec
from node_runtime.framing import FrameDecoder, frame
from node_runtime.messages import chunk_frame, error_frame, final_frame, parse_request
from node_runtime.errors import OlaneError
from trio_helpers import run_trio


async def sloppy_handler(stream) -> None:
    """Answer one request with a chunk, a final frame and then an error frame, in one write."""
    decoder = FrameDecoder()
    payloads = []
    while not payloads:
        payloads = decoder.feed(await stream.read(65536))
    message, _ = codec.decode(payloads[0])
    req = parse_request(message)
    frames = [chunk_frame(req, {"n": 1}, 1), final_frame(req, {"done": True}, sequence=2, chunks=1),
              error_frame(req, OlaneError(4001, "second terminal frame"))]
    await stream.write(b"".join(frame(codec.encode(f)) for f in frames))
    with trio.move_on_after(5):
        try:
            await stream.read(1)
        except Exception:
            pass


def test_frames_after_the_final_frame_are_ignored_but_counted():
    async def body():
        from libp2p.custom_types import TProtocol

        async with Node([], listen=["/ip4/127.0.0.1/tcp/0"]) as node, Client(codec="json") as client:
            node.host.set_stream_handler(TProtocol("/o/sloppy"), sloppy_handler)
            call = client.use_streaming("o://sloppy", "anything", via=node.listen_addrs[0],
                                        first_frame_timeout=10, idle_timeout=10, codec="json")
            record = StreamRecord(title="sloppy")
            async for response in call.responses():
                if response.last:
                    record.finish(response.data, response.sequence, response.chunks)
                else:
                    record.add_chunk(response.data, response.sequence, response.size)
            assert call.final == {"done": True} and call.error is None
            assert call.frames_after_final == 1
            record.frames_after_final += call.frames_after_final
            assert "1 frame(s) after the final frame" in record.lint()

    run_trio(body, timeout=30)
