"""The console's model of the network, living on the trio side: an optional
embedded node serving the tool library, one client node that makes every call,
the targets (nodes) the operator watches with their tools and methods, every
call of this session as a StreamRecord, and an errors log. No Textual here: the
screen reads this state and is told of changes through `listeners`."""
from __future__ import annotations

import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import trio

from node_runtime import Client, ErrorCode, Limits, Node, OlaneError, code_name

from .outbox import Outbox
from .network import LEADER, Network
from .stream_store import DEFAULT_MAX_CHUNKS, DEFAULT_STALL_AFTER, StreamRecord

LEADER_PROTOCOL = "/o/leader"


@dataclass
class MethodInfo:
    name: str
    description: str = ""
    streaming: bool = False
    parameters: list[dict[str, Any]] = field(default_factory=list)
    risk: str = "low"
    requires_approval: bool = False
    builtin: bool = False
    typed_by_hand: bool = False  # not listed by the node; the operator typed it
    takes_input: bool = False  # a bidirectional (or client-streaming) method: its tab has a send box

    @classmethod
    def from_wire(cls, name: str, meta: Any) -> "MethodInfo":
        meta = meta if isinstance(meta, dict) else {}
        approval = meta.get("approvalMetadata") or {}
        performance = meta.get("performance") or {}
        params = [p for p in (meta.get("parameters") or []) if isinstance(p, dict) and p.get("name")]
        risk = str(approval.get("riskLevel") or "low")
        return cls(
            name=str(meta.get("name") or name),
            description=str(meta.get("description") or ""),
            streaming=bool(performance.get("supportsStreaming")),
            parameters=params,
            risk=risk,
            requires_approval=bool(meta.get("requiresApproval")) or risk == "high",
            builtin=approval.get("category") == "builtin",
            takes_input=bool(performance.get("supportsInput")),
        )


@dataclass
class ToolInfo:
    address: str
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    listing_error: str | None = None  # handshake failed (e.g. 4003 from a plain TypeScript node)


@dataclass
class Target:
    multiaddr: str
    address: str | None = None  # an o:// address the operator named (else learned from identify)
    embedded: bool = False
    state: str = "connecting"  # connecting / connected / unreachable
    error: str | None = None
    peer_id: str | None = None
    tools: list[ToolInfo] = field(default_factory=list)
    name: str | None = None  # the operator's name for it, shown instead of the peer id
    #: its live streams as `list_streams` last answered (those this console may see); None: not asked
    #: yet or not offered (a TypeScript node)
    streams: "list[dict[str, Any]] | bool | None" = None
    network: Network | None = None  # a leader: the nodes its registry lists (console/core/network.py)

    @property
    def label(self) -> str:
        if self.name:
            return f"embedded node {self.name}" if self.embedded else self.name
        short = short_peer(self.peer_id or self.multiaddr.rsplit("/p2p/", 1)[-1])
        if self.network is not None:
            return f"leader {short}"
        return f"embedded node {short}" if self.embedded else f"node {short}"

    @property
    def nickname(self) -> str:
        """A few characters that tell the node apart (tabs): `embedded`, else the end of
        its peer id as the tree shows it (`…Zp7J`)."""
        if self.embedded:
            return "embedded"
        peer = self.peer_id or self.multiaddr.rsplit("/p2p/", 1)[-1]
        return f"…{peer[-4:]}" if len(peer) > 14 else peer

    def tool(self, address: str) -> ToolInfo | None:
        found = next((t for t in self.tools if t.address == address), None)
        if found is None and self.network is not None:
            found = self.network.tool(address)
        return found

    def all_tools(self) -> list[ToolInfo]:
        """Its own tools, then (a leader) those of every node of its network."""
        out = list(self.tools)
        if self.network is not None:
            for node in self.network.nodes.values():
                out.extend(node.tools)
        return out

    def routes(self, address: str) -> bool:
        """A call to `address` goes to this leader as a route envelope (a network node's tool)."""
        return self.network is not None and not any(t.address == address for t in self.tools)


@dataclass
class ErrorEntry:
    at: float  # wall clock
    where: str
    code: int
    name: str
    message: str


def short_peer(peer: str) -> str:
    """A peer id as the console shows it: 12D3KooW…Zs8d."""
    return f"{peer[:8]}…{peer[-4:]}" if len(peer) > 14 else peer


def olane_program(executable: str | None = None) -> list[str]:
    """How to run the `olane` that is running now, as pasted into a shell: `./run olane`
    (from the project folder) when it is a clone's own .venv, else its full path."""
    exe = Path(executable or sys.executable)
    venv = exe.parent.parent
    project = venv.parent
    if venv.name == ".venv" and (project / "run").is_file() and (project / "pyproject.toml").is_file():
        return ["./run", "olane"]
    beside = exe.with_name("olane")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("olane")
    return [found] if found else [str(exe), "-m", "console.cli"]


def project_folder(executable: str | None = None) -> Path | None:
    """The clone whose .venv runs this console, if it is one."""
    venv = Path(executable or sys.executable).parent.parent
    return venv.parent if olane_program(executable)[:1] == ["./run"] else None


def cli_command(record: StreamRecord, program: list[str] | None = None) -> str:
    """The headless command that repeats a call (`program`: how to run olane)."""
    import json

    verb = "stream" if record.streaming else "call"
    parts = [*(program or ["olane"]), verb, record.target, record.method, "--address", record.address]
    if record.params:
        parts += ["--params", json.dumps(record.params, ensure_ascii=False, separators=(",", ":"))]
    return shlex.join(parts)


STEP_BUDGET = 0.002  # s of chunk work in one trio step before the UI loop gets a turn
STEP_CHECK_BYTES = 8 * 1024  # chunk bytes between looks at the clock (~80 small chunks, or each big one)


class ConsoleSession:
    """Everything the console does on the network. Methods marked (trio) run in trio tasks."""

    def __init__(
        self,
        *,
        embedded: bool = True,
        embedded_tools: list | None = None,
        seed: str | None = None,
        caller_seed: str | None = None,
        caller_key: bytes | None = None,
        limits: Limits | None = None,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        stall_after: float = DEFAULT_STALL_AFTER,
        call_timeout: float = 120.0,
        heartbeat: float = 10.0,
        heartbeat_timeout: float = 5.0,
        history: Any = None,
        record_dir: Any = None,
        record_cap_bytes: int = 200_000_000,
        stream_refresh: float = 2.0,
        network_poll: float = 3.0,
        network_check: float = 10.0,
        network_gone_keep: float = 30.0,
    ) -> None:
        self.embedded = embedded
        self.embedded_tools = embedded_tools
        self.seed = seed  # the embedded node's identity
        self.caller_seed = caller_seed  # the identity other nodes see calling (the session's Client)
        self.caller_key = caller_key
        self.limits = limits or Limits()
        self.max_chunks = max_chunks
        self.stall_after = stall_after
        self.call_timeout = call_timeout
        self.heartbeat = heartbeat  # seconds between pings of every node (0: none)
        self.heartbeat_timeout = heartbeat_timeout
        self.node: Node | None = None
        self.client: Client | None = None
        self.targets: list[Target] = []
        self.calls: list[StreamRecord] = []
        self.errors: list[ErrorEntry] = []
        self.listeners: list[Callable[[str, Any], None]] = []
        self._scopes: dict[int, trio.CancelScope] = {}
        self._wakes: dict[int, trio.Event] = {}  # bidirectional calls' send pumps, waiting for more
        self._call_counter = 0
        self.names: dict[str, str] = {}  # multiaddr -> the operator's name for that node
        self.history = history  # a console.core.history.History: every ended call is appended
        self.record_dir = record_dir  # a folder: every ended call is kept there as a recording
        self.record_cap_bytes = record_cap_bytes
        self.stream_refresh = stream_refresh  # seconds between two `list_streams` of each node (0: never)
        self._live_calls: dict[int, Any] = {}  # record id -> its call while it runs
        # networks (a leader among the targets): its registry is read every `network_poll` s
        # (and at once on `poll_network`), every node pinged through it every `network_check` s,
        # a node gone from the registry shown as gone for `network_gone_keep` s
        self.network_poll = network_poll
        self.network_check = network_check
        self.network_gone_keep = network_gone_keep
        self._nursery: trio.Nursery | None = None
        self._watches: dict[int, tuple[trio.CancelScope, trio.Event]] = {}  # id(target) -> (scope, poll now)

    # -- notifications -----------------------------------------------------------

    def _changed(self, kind: str, what: Any = None) -> None:
        for listener in list(self.listeners):
            listener(kind, what)

    def log_error(self, where: str, error: BaseException) -> ErrorEntry:
        if isinstance(error, OlaneError):
            entry = ErrorEntry(time.time(), where, error.code, error.name, error.message)
        else:
            entry = ErrorEntry(time.time(), where, ErrorCode.UNKNOWN, code_name(ErrorCode.UNKNOWN),
                               f"{type(error).__name__}: {error}")
        self.errors.append(entry)
        self._changed("error", entry)
        return entry

    # -- lifecycle (trio) ------------------------------------------------------------

    async def run(self, initial_targets: list[tuple[str, str | None]] = (), *, task_status=trio.TASK_STATUS_IGNORED):
        """Start the client (and the embedded node), connect to `initial_targets`,
        then watch the nodes until cancelled."""
        async with Client(limits=self.limits, address="o://console", seed=self.caller_seed,
                          key=self.caller_key) as client:
            self.client = client
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.embedded:
                    await nursery.start(self._serve_embedded)
                task_status.started()
                await self._connect_all(initial_targets)
                if self.heartbeat > 0:
                    nursery.start_soon(self._heartbeat)
                if self.stream_refresh > 0:
                    nursery.start_soon(self._watch_streams)

    async def _serve_embedded(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        tools = self.embedded_tools
        if tools is None:
            from tool_library import build_tools

            tools = build_tools()
        # the console's own identity may list and tap every stream of the node it embeds
        async with Node(tools, seed=self.seed, limits=self.limits, admins=[self.client.peer_id]) as node:
            self.node = node
            self.targets.insert(0, Target(node.listen_addrs[0], embedded=True))
            self._changed("targets")
            task_status.started()
            await trio.sleep_forever()

    async def _connect_all(self, initial_targets) -> None:
        async with trio.open_nursery() as nursery:
            for target in list(self.targets):
                nursery.start_soon(self.discover, target)
            for multiaddr, address in initial_targets:
                if not any(t.multiaddr == multiaddr for t in self.targets):
                    target = Target(multiaddr, address, name=self.names.get(multiaddr))
                    self.targets.append(target)
                    nursery.start_soon(self.discover, target)
            self._changed("targets")

    # -- targets (trio) ----------------------------------------------------------------

    async def add_target(self, multiaddr: str, address: str | None = None, name: str | None = None) -> Target:
        multiaddr = multiaddr.strip()
        if name:
            self.names[multiaddr] = name
        existing = next((t for t in self.targets if t.multiaddr == multiaddr), None)
        if existing is not None:
            existing.name = name or existing.name
            if address and not existing.tool(address):
                existing.address = address
            await self.discover(existing)
            return existing
        target = Target(multiaddr, address or None, name=self.names.get(multiaddr))
        self.targets.append(target)
        self._changed("targets")
        await self.discover(target)
        return target

    def remove_target(self, target: Target) -> None:
        if target in self.targets and not target.embedded:
            self.targets.remove(target)
            watch = self._watches.pop(id(target), None)
            if watch is not None:
                watch[0].cancel()
            self._changed("targets")

    async def discover(self, target: Target) -> None:
        """Connect; learn the tools from identify (or the named address); list each
        one's methods through `handshake`."""
        client = self.client
        target.state, target.error = "connecting", None
        self._changed("target", target)
        try:
            with trio.fail_after(self.limits.dial_timeout + 5):
                target.peer_id = await client.connect(target.multiaddr)
                addresses = await client.tool_addresses(target.multiaddr)
        except (OlaneError, trio.TooSlowError) as exc:
            error = exc if isinstance(exc, OlaneError) else OlaneError(
                ErrorCode.FAILED_TO_DIAL_TARGET, f"no answer from {target.multiaddr}")
            target.state, target.error = "unreachable", str(error)
            self.log_error(target.label, error)
            self._changed("target", target)
            return
        if target.address and target.address not in addresses:
            addresses.insert(0, target.address)
        tools: list[ToolInfo] = []
        for address in addresses:
            tools.append(await self._list_methods(target, address))
        target.tools = tools
        target.state = "connected"
        if not tools:
            target.error = "the node advertises no olane tool: add it again with its o:// address"
        if LEADER in addresses:
            if target.network is None:
                target.network = Network(target.peer_id, gone_keep=self.network_gone_keep)
            self._watch_network(target)
        self._changed("target", target)

    async def _list_methods(self, target: Target, address: str, protocol: str | None = None) -> ToolInfo:
        info = ToolInfo(address)
        try:
            answer = await self.client.use(address, "handshake", {}, via=target.multiaddr, timeout=10,
                                           protocol=protocol)
            methods = ((answer or {}).get("result") or {}).get("methods") or {}
            if not isinstance(methods, dict):
                raise OlaneError(ErrorCode.INVALID_RESPONSE, "handshake answer has no methods")
            info.methods = {name: MethodInfo.from_wire(name, meta) for name, meta in methods.items()}
        except OlaneError as exc:
            # a plain TypeScript node answers 4003: the operator can still type a method
            info.listing_error = str(exc)
            if exc.code != ErrorCode.NOT_IMPLEMENTED:
                self.log_error(f"{target.label} {address}", exc)
        return info

    async def refresh(self, target: Target) -> None:
        """(trio) `r`: list the node's tools again; a leader's registry is read at once too."""
        await self.discover(target)
        if target.network is not None:
            await self.poll_once(target)

    # -- networks (trio) ------------------------------------------------------------------

    def _watch_network(self, target: Target) -> None:
        if id(target) in self._watches or self._nursery is None:
            return
        scope, now = trio.CancelScope(), trio.Event()
        self._watches[id(target)] = (scope, now)
        self._nursery.start_soon(self._network_loop, target, scope)

    def poll_network(self, target: Target) -> bool:
        """Read the leader's registry now (must run on the trio side: use the bridge)."""
        watch = self._watches.get(id(target))
        if watch is None:
            return False
        watch[1].set()
        return True

    async def _network_loop(self, target: Target, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await self.poll_once(target)
                watch = self._watches.get(id(target))
                if watch is None:
                    return
                with trio.move_on_after(self.network_poll):
                    await watch[1].wait()
                if watch[1].is_set():
                    self._watches[id(target)] = (scope, trio.Event())

    async def poll_once(self, target: Target) -> None:
        """(trio) One look at the network: the registry, the methods of nodes that joined,
        a ping through the leader to each node not checked for `network_check` s."""
        network = target.network
        try:
            entries = await self.client.use("o://registry", "find_all", {}, via=target.multiaddr,
                                            protocol=LEADER_PROTOCOL, timeout=self.heartbeat_timeout)
        except OlaneError as exc:
            if network.poll_error is None:
                self.log_error(f"{target.label} registry", exc)
            network.failed_poll(str(exc))
            self._changed("target", target)
            return
        changes = network.update(entries if isinstance(entries, list) else [])
        changed = bool(changes)
        limit = trio.Semaphore(8)

        async def list_node(node) -> None:
            nonlocal changed
            async with limit:
                tools = [await self._list_methods(target, a, LEADER_PROTOCOL) for a in node.tool_addresses()]
                node.tools, node.listed = tools, True
                answered = any(t.listing_error is None or "4003" in t.listing_error for t in tools)
                network.mark(node.address, answered, None if answered else tools[0].listing_error)
                changed = True

        async def ping(node) -> None:
            nonlocal changed
            async with limit:
                try:
                    await self.client.use(node.address, "ping", {}, via=target.multiaddr, protocol=LEADER_PROTOCOL,
                                          timeout=self.heartbeat_timeout)
                except OlaneError as exc:
                    changed |= network.mark(node.address, False, f"no answer to ping ({exc.name})")
                    return
                changed |= network.mark(node.address, True)

        async with trio.open_nursery() as nursery:
            due = {n.address for n in network.due(self.network_check)}
            for node in list(network.nodes.values()):
                if node.state == "gone":
                    continue
                if not node.listed:
                    nursery.start_soon(list_node, node)
                elif node.address in due:
                    nursery.start_soon(ping, node)
        if changed:
            self._changed("target", target)

    def route_of(self, target: Target, address: str) -> list[str]:
        """The relays a call to `address` on `target` passes (empty when it is called directly)."""
        return target.network.hops(address) if target.routes(address) else []

    # -- calls ------------------------------------------------------------------------

    def new_call(self, target: Target, address: str, method: str, params: dict[str, Any],
                 streaming: bool, takes_input: bool = False) -> StreamRecord:
        """A record for a call about to start (UI side); run it with `run_call` in trio.
        `takes_input`: a bidirectional call; the record's `outbox` holds what its tab sends."""
        self._call_counter += 1
        record = StreamRecord(
            title=f"{method} #{self._call_counter}", target=target.multiaddr, address=address, method=method,
            params=params, streaming=streaming, max_chunks=self.max_chunks, stall_after=self.stall_after,
        )
        record.number = self._call_counter
        if takes_input:
            record.outbox = Outbox()
        record.route = self.route_of(target, address)
        record.protocol = LEADER_PROTOCOL if target.routes(address) else None
        self.calls.append(record)
        self._changed("calls", record)
        return record

    def forget_call(self, record: StreamRecord) -> None:
        """The operator closed the call's tab: drop it and its data (the history keeps
        its summary). A call still running must be cancelled too (`cancel_call`)."""
        try:
            self.calls.remove(record)
        except ValueError:
            pass
        record.closed = True
        if record.state.ended or id(record) not in self._scopes:
            record.release()
        # else: once it has ended, after its history line and recording are written (run_call)
        self._changed("calls", None)

    def new_tap(self, target: Target, stream: dict[str, Any]) -> StreamRecord:
        """A record for a tap on one of `target`'s live streams (an entry of its
        `streams`); run it with `run_call`. Its chunks keep the stream's sequences,
        so chunks the tap lost show as gaps."""
        record = self.new_call(target, str(stream.get("address") or ""), "tap",
                               {"streamId": stream.get("streamId"), "from": "buffer"}, True)
        record.tap_of = str(stream.get("streamId"))
        record.title = f"tap {stream.get('method')} #{record.number}"
        return record

    async def abort_connection(self, record: StreamRecord) -> bool:
        """(trio) Kill the connection a running call reads from, as a network failure
        would (a resumable call then resumes in the same record)."""
        call = self._live_calls.get(id(record))
        return call is not None and call.abort_connection()

    async def _open_call(self, record: StreamRecord):
        """A streaming call to a node of ours is resumable: a lost connection is
        resumed in the same record. Taps and unary calls are plain."""
        if record.outbox is not None:  # a bidirectional call (its tab has a send box): not resumable
            from node_runtime.bidirectional import BidirectionalCall

            return BidirectionalCall(self.client, record.address, record.method, record.params, via=record.target,
                                     first_frame_timeout=self.call_timeout, idle_timeout=self.call_timeout,
                                     protocol=record.protocol)
        resumable = False
        if record.streaming and record.tap_of is None and record.protocol is None:  # direct, not routed
            target = next((t for t in self.targets if t.multiaddr == record.target), None)
            resumable = target is not None and isinstance(target.streams, list)  # it answered list_streams
        call = self.client.use_streaming(
            record.address, record.method, record.params, via=record.target,
            first_frame_timeout=self.call_timeout, idle_timeout=self.call_timeout, resumable=resumable,
            protocol=record.protocol,
        )
        if not resumable:
            call.streaming = record.streaming
        return call

    async def run_call(self, record: StreamRecord) -> None:
        """(trio) Make the call and fill its record until it ends or is cancelled."""
        scope = trio.CancelScope()
        self._scopes[id(record)] = scope
        outbox = record.outbox
        call = await self._open_call(record)
        self._live_calls[id(record)] = call
        try:
            with scope:
                if outbox is None:
                    await self._read_answer(call, record)
                else:
                    await self._bidirectional(call, record)
            if scope.cancelled_caught or not record.state.ended:
                record.cancel()
        except OlaneError as exc:
            record.fail(exc.code, exc.name, exc.message, exc.details,
                        missing_final=exc.code == ErrorCode.RECEIVE_FAILED)
            self.log_error(f"{record.title} ({record.address})", exc)
            if exc.code in (ErrorCode.RECEIVE_FAILED, ErrorCode.FAILED_TO_DIAL_TARGET, ErrorCode.TIMEOUT):
                await self._probe(record.target)
        except Exception as exc:  # never let a call take the console down
            record.fail(ErrorCode.UNKNOWN, code_name(ErrorCode.UNKNOWN), f"{type(exc).__name__}: {exc}")
            self.log_error(record.title, exc)
        finally:
            self._scopes.pop(id(record), None)
            self._live_calls.pop(id(record), None)
            frames_after = getattr(call, "frames_after_final", 0)
            if frames_after:
                record.frames_after_final += frames_after
            with trio.CancelScope(shield=True):  # bounded: one file write and one line
                await self._keep(record)
            if record.closed:  # its tab was closed while it ran
                record.release()
            self._changed("call-ended", record)

    async def _read_answer(self, call, record: StreamRecord, started=None) -> None:
        """(trio) Start the call and put its answer in the record."""
        await call.start()
        if started is not None:
            started()
        # times count from the request write (as `olane stream` counts them), not from
        # the dial and stream negotiation before it, which wait on the screen's work
        record.codec = call.wire_codec
        record.mark_running(call.started_at)
        if call.started_at is not None:
            record.request_at = 0.0  # `started` is now the request write itself
        add_chunk = record.add_chunk
        resumes = 0
        tap = record.tap_of is not None
        # one read holds up to 256 KiB (thousands of chunks), all decoded in one trio step,
        # during which the screen's loop waits (15-150 ms under a firehose): every STEP_BUDGET
        # of chunk work, give the loop a turn
        clock = time.perf_counter
        step_end = clock() + STEP_BUDGET
        unchecked = 0  # bytes of chunks since the last look at the clock
        async for response in call.responses():
            unchecked += response.size or 0
            if unchecked >= STEP_CHECK_BYTES:
                unchecked = 0
                if clock() >= step_end:
                    await trio.lowlevel.checkpoint()
                    step_end = clock() + STEP_BUDGET
            if tap and (lost := response.extra("_dropped")):
                record.tap_dropped += lost
            if response.last:
                record.finish(response.data, response.sequence, response.chunks)
            else:
                if getattr(call, "resumes", 0) != resumes:  # a ResumableCall went on over a new stream
                    resumes = call.resumes
                    record.note_resumed(call.resumed_at[-1] + 1)
                add_chunk(response.data, response.sequence, response.size)

    async def _bidirectional(self, call, record: StreamRecord) -> None:
        """(trio) A call with a send box: its writer and the pump of the record's
        outbox run beside the reading, and stop when it ends."""
        try:
            async with trio.open_nursery() as nursery:
                def started() -> None:
                    nursery.start_soon(call.writer.run)
                    nursery.start_soon(self._pump_input, call, record)

                await self._read_answer(call, record, started)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the reading's own error, not trio's wrapping of it
            errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
            if len(errors) == 1 and not isinstance(errors[0], BaseExceptionGroup):
                raise errors[0] from None
            raise

    def wake_input(self, record: StreamRecord) -> None:
        """(trio) The record's outbox has more to send (or its end)."""
        wake = self._wakes.get(id(record))
        if wake is not None:
            wake.set()

    async def _pump_input(self, call, record: StreamRecord) -> None:
        """(trio) Send what the tab put in the record's outbox, in order, then its end."""
        outbox = record.outbox
        try:
            while True:
                while outbox.pending:
                    value = outbox.take()
                    await call.send(value)
                    outbox.mark_sent(value)
                    record.version += 1
                if outbox.end_asked:
                    await call.end()
                    outbox.mark_ended()
                    record.version += 1
                    return
                wake = self._wakes[id(record)] = trio.Event()
                await wake.wait()
        except OlaneError as exc:
            outbox.stop(exc.message)
            record.version += 1
        finally:
            self._wakes.pop(id(record), None)

    async def _keep(self, record: StreamRecord) -> None:
        """(trio) The ended call into the history, and into a recording when every call is kept."""
        if self.history is None and self.record_dir is None:
            return
        from .history import HistoryEntry

        def write() -> None:
            path = None
            if self.record_dir is not None:
                path = self.save_recording(record, self.record_dir, source="console auto-record")
                from .recording import prune

                prune(path.parent, self.record_cap_bytes, keep=[path])
            if self.history is not None:
                embedded = any(t.embedded and t.multiaddr == record.target for t in self.targets)
                self.history.append(HistoryEntry.of_record(record, recording=str(path) if path else None,
                                                           name=self.names.get(record.target), embedded=embedded))

        try:
            await trio.to_thread.run_sync(write)
        except Exception as exc:  # a full disk must not take a call down
            self.log_error("history", exc)

    @staticmethod
    def save_recording(record: StreamRecord, folder, *, source: str = "console export"):
        """Write what the record holds as a recording (docs/recordings.md) in `folder`."""
        from pathlib import Path

        from .recording import default_name, from_stream_record, write_recording

        folder = Path(folder)
        path = folder / default_name(record.method, record.started_wall, record.number or None)
        n = 1
        while path.exists():
            n += 1
            path = folder / default_name(f"{record.method}-{n}", record.started_wall, record.number or None)
        record.recording_path = write_recording(from_stream_record(record, source=source), path)
        return record.recording_path

    async def stop_calls(self, timeout: float = 1.0) -> None:
        """(trio) Cancel every running call and wait (bounded) until each has reset
        its stream: done before the nodes stop, the resets still find a reader."""
        for scope in list(self._scopes.values()):
            scope.cancel()
        with trio.move_on_after(timeout):
            while self._scopes:
                await trio.sleep(0.01)

    def cancel_call(self, record: StreamRecord) -> bool:
        """Cancel a running call (must run on the trio side: use the bridge)."""
        scope = self._scopes.get(id(record))
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _heartbeat(self) -> None:
        """Ping every node now and then, so that one that stopped answering (killed,
        hung, network gone) shows as unreachable without waiting for a call to fail
        (py-libp2p never notices a hung peer by itself), and one that answers again
        is listed again."""
        while True:
            await trio.sleep(self.heartbeat)
            async with trio.open_nursery() as nursery:
                for target in list(self.targets):
                    if target.state != "connecting" and target.tools:
                        nursery.start_soon(self._check, target)

    async def _watch_streams(self) -> None:
        """List every connected node's live streams now and then (fixed rate: the
        tree shows them; a node that does not offer `list_streams` is not asked again)."""
        while True:
            async with trio.open_nursery() as nursery:
                for target in list(self.targets):
                    if target.state == "connected" and target.tools and target.streams is not False:
                        nursery.start_soon(self.refresh_streams, target)
            await trio.sleep(self.stream_refresh)

    async def refresh_streams(self, target: Target) -> None:
        """(trio) Ask `target` for its live streams; tell the screen when they changed."""
        try:
            answer = await self.client.use(target.tools[0].address, "list_streams", {}, via=target.multiaddr,
                                           timeout=self.heartbeat_timeout)
            listed = answer.get("streams") if isinstance(answer, dict) else None
            streams = [e for e in listed if isinstance(e, dict) and e.get("streamId")] if isinstance(listed, list) else []
        except OlaneError as exc:
            if exc.code in (ErrorCode.INVALID_ACTION, ErrorCode.NOT_IMPLEMENTED):
                target.streams = False  # a node without live streams (TypeScript olane)
            return
        # the console's own calls and taps are in their tabs already: list the others' streams
        mine = self.client.peer_id
        streams = [e for e in streams if e.get("method") != "tap" and e.get("callerPeerId") != mine]
        if streams != target.streams:
            target.streams = streams
            self._changed("streams", target)

    async def _check(self, target: Target) -> None:
        try:
            await self.client.use(target.tools[0].address, "ping", {}, via=target.multiaddr,
                                  timeout=self.heartbeat_timeout)
        except OlaneError as exc:
            if target.state != "unreachable":
                target.state, target.error = "unreachable", f"no answer to ping ({exc.name})"
                self.log_error(target.label, exc)
                self._changed("target", target)
            return
        if target.state == "unreachable" and target in self.targets:
            await self.discover(target)  # back: list its tools again

    async def _probe(self, multiaddr: str) -> None:
        """After a call lost its stream: is the node still there?"""
        target = next((t for t in self.targets if t.multiaddr == multiaddr), None)
        if target is not None and target.tools:
            await self._check(target)

    async def node_metrics(self, target: Target, address: str) -> Any:
        return await self.client.use(address, "get_metrics", {}, via=target.multiaddr, timeout=10)

