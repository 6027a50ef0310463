"""Where a request goes: to a tool this node serves, or onward.

A request arrives on a libp2p protocol (`/o/<address>`, or `/o/reuse` on a
connection the other side opened) and, when it is a `route` envelope, names
its final target in `params.address` (PROTOCOL.md section 5). `Router.local`
finds the tool that answers it here; `Router.forward` relays a request for an
address it does not serve (section 8.4) when this node leads or parents
others: it resolves the next hop (its children, then the leader's registry,
then its own leader), sends the envelope on unchanged except `params.address`,
and passes back every frame of the answer as it arrives, chunks included, in
order, untouched (`_sequence` and `success: false` survive). The frames go back
as the bytes that came when they are in the caller's codec: the envelope goes on
in it when the next hop is known to speak it (JSON otherwise; a msgpack caller's
answer is then re-encoded), and the other extensions travel with the envelope, so
the next hop answers what the caller asked for. One read at a time: the next is
read only once the caller's writer took what the last one gave, so a slow
caller slows the far tool and a relay holds at most one read (`relay_read_bytes`) per
relayed call, besides the next hop's receive window (capped: `relay_window_bytes`) and
its writer's buffer. A caller that
goes away cancels the relay, which resets the next hop's stream at once.
A node that leads or parents no one answers 4002.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

import msgpack
import orjson
import trio

from . import codec as codecs
from .addresses import Address
from .codec import JSON, MSGPACK
from .errors import ErrorCode, OlaneError
from .framing import FrameDecoder, frame
from .libp2p_fixes import capped_windows
from .messages import FAST_DATA_MAX, ChunkEncoder, IncomingRequest, answer_too_large
from .registry import Registry, transports_of
from .stream_io import STREAM_ENDED, close_quietly, reset_quietly, write_shielded
from .tools import Tool

#: `send(frames)`: queue answer frames (encoded in the caller's codec and length-prefixed) toward the caller
SendFrames = Callable[[bytes], Awaitable[None]]


LEADER = "o://leader"


@dataclass
class Child:
    """A node that did `child_register` with this one."""

    address: str
    transports: list[str] = field(default_factory=list)
    peer_id: str | None = None


@dataclass
class Hop:
    """Where a relayed request goes next: dial `targets` (multiaddrs or a
    connected peer id), open `protocol`, send the envelope with `address`."""

    targets: list[str]
    protocol: str
    address: str


class Router:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools = list(tools)
        self.node: Any = None  # the Node this router belongs to (set by the node)
        # the network this node takes part in (set by leader.py and joining.py)
        self.children: dict[str, Child] = {}  # full address -> child
        self.home: str | None = None  # the address children nest under (o://leader, o://leader/alpha)
        self.registry: Registry | None = None  # a leader's own registry
        self.upstream: str | None = None  # the leader's multiaddr, for addresses this node cannot place
        self.relayed = 0  # requests relayed (for tests and metrics)
        self._by_address: dict[str, Tool] = {}
        self._by_protocol: dict[str, Tool] = {}
        for tool in self.tools:
            for key in {tool.address.value, tool.address.static.value}:
                if key in self._by_address and self._by_address[key] is not tool:
                    raise ValueError(f"two tools answer to {key}")
                self._by_address[key] = tool
                self._by_protocol[Address(key).protocol] = tool

    @property
    def protocols(self) -> list[str]:
        """The `/o/...` protocols the tools answer on (full and static addresses)."""
        return list(self._by_protocol)

    def local(self, req: IncomingRequest, protocol: str) -> Tool | None:
        """The tool here that answers `req`, or None when its envelope names an
        address no tool here answers to."""
        if req.envelope and req.address:
            return self._by_address.get(req.address)
        return self._by_protocol.get(protocol) or self.tools[0]

    async def forward(self, req: IncomingRequest, codec: str, send: SendFrames) -> None:
        """Relay `req` (read in `codec`) toward its address and `send` every frame of
        the answer. Raises OlaneError when it cannot (the caller then gets an error frame)."""
        if not req.envelope or not req.address or self.node is None or not req.raw:
            raise OlaneError(ErrorCode.NOT_FOUND, "Address not found", {"address": req.address})
        hop = self.next_hop(req.address)
        self.relayed += 1
        await relay(self.node, req, hop, codec, send)

    # -- resolving ------------------------------------------------------------------

    def add_child(self, address: str, transports: Iterable[str] = (), peer_id: str | None = None) -> Child:
        child = Child(Address.parse(address).value, [t for t in transports if isinstance(t, str)], peer_id)
        self.children[child.address] = child
        return child

    def drop_children(self, peer_id: str | None = None, address: str | None = None) -> None:
        for key in [k for k, c in self.children.items()
                    if (peer_id and c.peer_id == peer_id) or (address and c.address == address)]:
            del self.children[key]

    def next_hop(self, address: str) -> Hop:
        """Children first (a child at or above `address`, or whose static address is its
        first segment), then the registry, then this node's own leader; else 4002."""
        target = Address.parse(address)
        value = target.value
        for child in sorted(self.children.values(), key=lambda c: -len(c.address)):
            if value == child.address or value.startswith(child.address + "/"):
                return self._via_child(child, value)
        home = self.home
        under_home = home is not None and value.startswith(home + "/")
        first = target.segments[len(Address(home).segments)] if under_home else target.segments[0]
        for child in self.children.values():
            if Address(child.address).static.value == "o://" + first and (
                    under_home and child.address == f"{home}/{first}" or not under_home):
                return self._via_child(child, value)
        if self.registry is not None:
            hop = self._from_registry(target, first)
            if hop is not None:
                return hop
        mine = any(value.startswith(tool.address.value + "/") for tool in self.tools)
        if under_home or mine or self.upstream is None:
            if under_home or mine:
                raise OlaneError(ErrorCode.NOT_FOUND, f"{value} node not found.")
            raise OlaneError(ErrorCode.NOT_FOUND, "No transports provided for the address, cannot connect",
                             {"address": value})
        return Hop([self.upstream], "/o/leader", value)

    def _via_child(self, child: Child, address: str) -> Hop:
        targets = ([child.peer_id] if child.peer_id else []) + child.transports
        return Hop(targets, Address(child.address).protocol, address)

    def _from_registry(self, target: Address, first: str) -> Hop | None:
        """The newest entry at or above `target`, or with its static address or
        protocol; the address it is sent on is its full one."""
        registry = self.registry
        value = target.value
        best = None
        for entry in registry.find_all():
            address = entry.get("address") or ""
            if value == address or value.startswith(address + "/"):
                if best is None or len(address) > len(best[0].get("address") or ""):
                    best = (entry, value)
        if best is None:
            static = "o://" + target.segments[-1] if not target.is_nested else None
            found = registry.search(static_address=static or None, protocols=[target.protocol])
            for entry in found:
                full = _full_address_in(entry, target) if static else value
                if full:
                    best = (entry, full)
                    break
        if best is None:
            return None
        entry, full = best
        if entry.get("peerId") == (self.node.peer_id if self.node else None):
            return None  # our own entry: nothing to relay to
        for child in self.children.values():  # through the child on its path, as TypeScript does
            if full.startswith(child.address + "/") or full == child.address:
                return self._via_child(child, full)
        targets = [entry["peerId"]] if entry.get("peerId") else []
        targets += transports_of(entry)
        return Hop(targets, Address(entry["address"]).protocol, full)


def _full_address_in(entry: dict, target: Address) -> str | None:
    """`o://demo` -> the longest address among the entry's own and its `/o/...`
    protocols whose last segment is `demo`."""
    static = target.segments[-1]
    names = [entry.get("address") or ""]
    names += ["o://" + p[3:] for p in entry.get("protocols") or () if isinstance(p, str) and p.startswith("/o/")]
    names = [n for n in names if n.startswith("o://") and n.rsplit("/", 1)[-1] == static and n != "o://reuse"]
    return max(names, key=len) if names else None


# -- relaying ---------------------------------------------------------------------


async def dial_any(node, targets: list[str]):
    """The first of `targets` (a connected peer id, or multiaddrs) that answers."""
    errors = []
    for target in targets:
        if target.startswith("/memory/"):
            continue
        try:
            return await node.peers.peer_at(target)
        except OlaneError as exc:
            errors.append(exc.message)
    raise OlaneError(ErrorCode.FAILED_TO_DIAL_TARGET, "could not reach the next hop",
                     {"targets": targets, "errors": errors[-3:]})


class ChunkShape:
    """Whether an answer payload is a chunk frame (or a batched one) of `req` exactly
    as our servers write them in `codec` (messages.ChunkEncoder): the head, one
    value, the tail, the sequence (and `_batch` with its count). Such a frame is
    neither the terminal frame nor another request's, so a relay passes it on
    without decoding it whole; its data is decoded alone, to know it is one value
    (as messages.ChunkReader does), so the caller reads the frame as the relay did.
    Any other payload (a final or error frame, a TypeScript peer's chunk, a live
    stream's) gives False: decode it."""

    __slots__ = ("_head", "_batch_head", "_tail", "_json", "_max")

    def __init__(self, req: IncomingRequest, codec: str) -> None:
        encoder = ChunkEncoder(req, codec)
        self._head = encoder.head
        self._batch_head = encoder.batch_head
        self._tail = encoder.tail
        self._json = codec != MSGPACK
        # longer data could nest too deep for its frame: such a frame is decoded whole,
        # which costs about what decoding its data alone would
        self._max = FAST_DATA_MAX[codec]

    def __call__(self, payload: bytes) -> bool:
        head = self._head
        if self._json:
            if not payload.startswith(head) or payload[-2:] != b"}}":
                return False
            at = payload.rfind(self._tail, len(head))
            if at < 0 or at - len(head) > self._max:
                return False
            rest = payload[at + len(self._tail):-2]
            if not _is_number(rest):
                first, batch, count = rest.partition(b',"_batch":')
                if not batch or not _is_number(first) or not _is_number(count):
                    return False
            try:
                orjson.loads(payload[len(head):at])
            except orjson.JSONDecodeError:
                return False
            return True
        batched = not payload.startswith(head)
        if batched:
            head = self._batch_head
            if not payload.startswith(head):
                return False
        at = payload.rfind(self._tail, len(head))
        if at < 0 or at - len(head) > self._max:
            return False
        end = _after_uint(payload, at + len(self._tail))
        if batched:  # its `_batch` and count follow the sequence
            if end < 0 or not payload.startswith(_BATCH_KEY, end):
                return False
            end = _after_uint(payload, end + len(_BATCH_KEY))
        if end != len(payload):
            return False
        try:
            msgpack.unpackb(payload[len(head):at], raw=False, strict_map_key=False)
        except Exception:  # ExtraData (more than one value) or anything malformed
            return False
        return True


_BATCH_KEY = msgpack.packb("_batch")
#: msgpack's encodings of an unsigned integer by their first byte (fixints aside): their sizes
_UINT_SIZES = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}


def _is_number(text: bytes) -> bool:
    """A JSON integer >= 0 as our servers write one: digits, no leading zero."""
    return text.isdigit() and (text[0] != 0x30 or len(text) == 1)


def _after_uint(payload: bytes, at: int) -> int:
    """Where the msgpack unsigned integer at `at` ends (-1 when there is none)."""
    if at >= len(payload):
        return -1
    first = payload[at]
    size = 1 if first < 0x80 else _UINT_SIZES.get(first, 0)
    return at + size if size and at + size <= len(payload) else -1


async def relay(node, req: IncomingRequest, hop: Hop, codec: str, send: SendFrames) -> None:
    """Send `req`'s envelope to `hop` and pass every frame of the answer to `send`:
    as it came when it is in `codec` (the caller's), else re-encoded in it."""
    limits = node.limits
    envelope = dict(req.raw)
    envelope["params"] = dict(envelope.get("params") or {})
    envelope["params"]["address"] = hop.address
    envelope["params"].pop("_compress", None)  # compression is per stream: this one, not the next hop's
    peer = await dial_any(node, hop.targets)
    # the caller's codec when the next hop is known to speak it (a parent learned its
    # child's when it pinged it back), else JSON as toward anyone
    hop_codec = codec if codec == JSON or node.peers.codec_of(peer, hop.protocol) == codec else JSON
    release = node.peers.take_stream_slot(peer)
    stream = None
    done = False
    try:
        with capped_windows(limits.relay_window_bytes):  # a slow caller parks at most this here
            stream = await node.peers.open_stream(peer, Address.parse(hop.address), hop.protocol)
        await write_shielded(stream, frame(codecs.encode(envelope, hop_codec)), limits.write_timeout)
        decoder = FrameDecoder(limits.max_frame_bytes)  # (the caller's frame limit is the same)
        is_chunk = ChunkShape(req, codec) if hop_codec == codec else None
        frame_limit = limits.max_frame_bytes
        wanted_id = str(req.id)
        frames = 0
        while not done:
            timeout = limits.first_frame_timeout if frames == 0 else limits.idle_timeout
            data = b""
            with trio.move_on_after(timeout) as scope:
                try:
                    data = await stream.read(limits.relay_read_bytes)
                except STREAM_ENDED:
                    data = b""
            if scope.cancelled_caught:
                raise OlaneError(ErrorCode.TIMEOUT, f"no answer from the next hop toward {hop.address} "
                                                    f"within {timeout:g} s")
            if not data:
                raise OlaneError(ErrorCode.RECEIVE_FAILED,
                                 f"the next hop toward {hop.address} ended before the final frame",
                                 {"frames": frames})
            out: list[bytes] = []  # this read's frames toward the caller, sent together
            failure = None  # what ends the relay after the frames before it went on
            for payload in decoder.feed(data):
                if is_chunk is not None and is_chunk(payload):
                    frames += 1
                    out.append(frame(payload))
                    continue
                try:
                    message, payload_codec = codecs.decode(payload)
                except OlaneError as exc:
                    failure = OlaneError(ErrorCode.INVALID_RESPONSE,
                                         f"unreadable answer from the next hop: {exc.message}")
                    break
                if str(message.get("id")) != wanted_id:
                    continue
                frames += 1
                if payload_codec != codec:
                    try:
                        payload = codecs.encode(message, codec)
                    except OlaneError as exc:  # 4008: not encodable in the caller's codec
                        failure = exc
                        break
                    if len(payload) > frame_limit:
                        failure = answer_too_large(len(payload), frame_limit)
                        break
                out.append(frame(payload))
                result = message.get("result")
                if not isinstance(result, dict) or result.get("_last") or result.get("error"):
                    done = True  # the terminal frame: anything after it (TS sends two on failure) is dropped
                    break
            if out:
                await send(out[0] if len(out) == 1 else b"".join(out))
            if failure is not None:
                raise failure
    finally:
        if stream is not None:
            if done:
                await close_quietly(stream)
            else:
                await reset_quietly(stream)  # the caller left (or the hop failed): stop the far tool now
        release()
