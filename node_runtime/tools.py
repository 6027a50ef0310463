"""Tools: classes whose `_tool_<name>` methods are callable remotely as `<name>`.

A method receives a `Request` and, by name, any parameters its signature
declares; their types, defaults and whether they are required become the
method's metadata (PROTOCOL.md section 7), as does the description given to
`@tool_method` (or the docstring). An async generator method streams one chunk
per yielded value; a coroutine answers once.
"""
from __future__ import annotations

import inspect
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .addresses import Address
from .codec import CODECS
from .compression import COMPRESSIONS
from .errors import ErrorCode, OlaneError
from .incoming import Incoming

RISK_LEVELS = ("low", "medium", "high")


@dataclass
class Param:
    """Extra metadata for one parameter; type, default and required come from the signature."""

    description: str = ""
    options: list[Any] | None = None
    examples: list[Any] | None = None
    type: str | None = None  # override the type read from the annotation
    required: bool | None = None  # override (for parameters read from request.params)
    default: Any = inspect.Parameter.empty
    minimum: float | None = None
    maximum: float | None = None


@dataclass
class StreamEnd:
    """Yield this from a streaming method to end the stream with `data` as the final frame's data."""

    data: Any = None


@dataclass
class Request:
    """What a tool method sees of one call."""

    id: Any
    method: str
    params: dict[str, Any]
    caller_address: str | None = None
    connection_id: str = ""
    peer_id: str | None = None
    node: Any = None
    started: float = field(default_factory=time.monotonic)
    #: a bidirectional method's input: the chunks the caller sends (an ended one when it sends none)
    incoming: Incoming | None = None


def tool_method(
    description: str | None = None,
    *,
    params: dict[str, "str | Param"] | None = None,
    risk: str = "low",
    category: str | None = None,
    examples: list[dict[str, Any]] | None = None,
    requires_approval: bool | None = None,
    incoming: bool = False,
) -> Callable[[Callable], Callable]:
    """Describe a `_tool_` method: what it does, its parameters, its risk.
    `incoming=True`: the method reads `request.incoming` (the caller's input
    chunks); a parameter annotated `Incoming` says the same and receives it."""
    if risk not in RISK_LEVELS:
        raise ValueError(f"risk must be one of {RISK_LEVELS}")

    def mark(fn: Callable) -> Callable:
        fn.__olane_method__ = {
            "description": description,
            "params": {k: (Param(v) if isinstance(v, str) else v) for k, v in (params or {}).items()},
            "risk": risk,
            "category": category,
            "examples": examples,
            "requires_approval": requires_approval,
            "incoming": incoming,
        }
        return fn

    return mark


def serves_sink(fn: Callable) -> Callable:
    """Mark a built-in whose coroutine returns a `live.Sink` the server streams
    (its chunks keep the sequences of the stream they copy)."""
    fn.__olane_sink__ = True
    return fn


# --- metadata -----------------------------------------------------------------

_TYPE_NAMES = {int: "number", float: "number", str: "string", bool: "boolean", dict: "object", list: "array"}


def _describe_annotation(annotation: Any) -> tuple[str, list[Any] | None]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any", None
    origin = typing.get_origin(annotation)
    if origin is Literal:
        options = list(typing.get_args(annotation))
        return _TYPE_NAMES.get(type(options[0]), "string"), options
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _describe_annotation(args[0])
        return "any", None
    if origin is not None:
        annotation = origin
    return _TYPE_NAMES.get(annotation, "any"), None


@dataclass
class ParamSpec:
    name: str
    type: str
    required: bool
    default: Any
    description: str = ""
    options: list[Any] | None = None
    examples: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    bound: bool = True  # passed to the method as a keyword argument
    integer: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "description": self.description,
                               "required": self.required}
        if not self.required and self.default is not inspect.Parameter.empty:
            out["defaultValue"] = self.default
        if self.options:
            out["options"] = list(self.options)
        if self.examples:
            out["exampleValues"] = list(self.examples)
        structure: dict[str, Any] = {}
        if self.options:
            structure["enum"] = list(self.options)
        if self.minimum is not None:
            structure["minimum"] = self.minimum
        if self.maximum is not None:
            structure["maximum"] = self.maximum
        if structure:
            out["structure"] = structure
        return out


@dataclass
class MethodSpec:
    name: str
    function: Callable
    streaming: bool
    description: str
    params: list[ParamSpec]
    risk: str = "low"
    category: str | None = None
    examples: list[dict[str, Any]] | None = None
    requires_approval: bool = False
    #: takes the caller's input chunks (a bidirectional or client-streaming method)
    takes_input: bool = False
    #: the parameter that receives them (None: the method reads request.incoming)
    incoming_param: str | None = None
    sink: bool = False  # answers a live.Sink to serve (tap, resume: node_runtime/live_frames.py)

    def to_wire(self) -> dict[str, Any]:
        approval: dict[str, Any] = {"riskLevel": self.risk}
        if self.category:
            approval["category"] = self.category
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": [p.to_wire() for p in self.params],
            "dependencies": [],
            "requiresApproval": self.requires_approval,
            "approvalMetadata": approval,
            "performance": {"supportsStreaming": self.streaming},
        }
        if self.takes_input:  # only on methods of ours that take input (docs/protocol-extensions.md)
            out["performance"]["supportsInput"] = True
        if self.examples:
            out["examples"] = self.examples
        return out

    def bind(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check `params` against the declared parameters; return the keyword arguments.

        Missing required parameters -> 4006 naming them; a value of the wrong type,
        outside its options or outside its minimum / maximum -> 4007.
        """
        missing = [p.name for p in self.params if p.required and params.get(p.name) is None]
        if missing:
            raise OlaneError(
                ErrorCode.MISSING_PARAMETERS,
                f"missing required parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                {"missing": missing, "method": self.name},
            )
        kwargs: dict[str, Any] = {}
        for p in self.params:
            value = params.get(p.name)
            if value is None:
                if not p.bound:
                    continue
                value = None if p.default is inspect.Parameter.empty else p.default
            else:
                value = _check_type(p, value, self.name)
            if p.bound:
                kwargs[p.name] = value
        return kwargs


def _check_type(p: ParamSpec, value: Any, method: str) -> Any:
    ok = True
    if p.type == "number":
        if isinstance(value, str):
            try:
                value = float(value) if not p.integer else int(value)
            except ValueError:
                ok = False
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
        if ok and p.integer and isinstance(value, float):
            ok = value.is_integer()
            value = int(value) if ok else value
    elif p.type == "string":
        ok = isinstance(value, str)
    elif p.type == "boolean":
        ok = isinstance(value, bool)
    elif p.type == "object":
        ok = isinstance(value, dict)
    elif p.type == "array":
        ok = isinstance(value, list)
    if not ok:
        raise OlaneError(
            ErrorCode.INVALID_PARAMETERS,
            f"parameter {p.name!r} of {method} must be {p.type}, got {type(value).__name__}",
            {"parameter": p.name, "expected": p.type},
        )
    if p.options and value not in p.options:
        raise OlaneError(
            ErrorCode.INVALID_PARAMETERS,
            f"parameter {p.name!r} of {method} must be one of {p.options}",
            {"parameter": p.name, "options": p.options},
        )
    low, high = p.minimum, p.maximum
    if p.type == "number" and ((low is not None and value < low) or (high is not None and value > high)):
        if low is not None and high is not None:
            bounds = f"between {low:g} and {high:g}"
        else:
            bounds = f"at least {low:g}" if low is not None else f"at most {high:g}"
        raise OlaneError(
            ErrorCode.INVALID_PARAMETERS,
            f"{p.name} must be {bounds}, got {value}",
            {"parameter": p.name, "minimum": low, "maximum": high},
        )
    return value


def _method_spec(name: str, fn: Callable) -> MethodSpec:
    info = getattr(fn, "__olane_method__", {}) or {}
    extra: dict[str, Param] = dict(info.get("params") or {})
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    params: list[ParamSpec] = []
    positional = [p for p in signature.parameters.values() if p.name != "self"]
    incoming_param = None
    for p in positional[1:]:  # the first one is the Request
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = hints.get(p.name, p.annotation)
        if annotation is Incoming or annotation == "Incoming":  # the caller's input, not a parameter
            incoming_param = p.name
            continue
        type_name, options = _describe_annotation(annotation)
        doc = extra.pop(p.name, Param())
        required = p.default is inspect.Parameter.empty if doc.required is None else doc.required
        params.append(
            ParamSpec(
                name=p.name,
                type=doc.type or type_name,
                required=required,
                default=p.default,
                description=doc.description,
                options=doc.options or options,
                examples=doc.examples,
                minimum=doc.minimum,
                maximum=doc.maximum,
                integer=annotation is int,
            )
        )
    for pname, doc in extra.items():  # documented but read from request.params by the method
        params.append(
            ParamSpec(
                name=pname,
                type=doc.type or "any",
                required=bool(doc.required) and doc.default is inspect.Parameter.empty,
                default=doc.default,
                description=doc.description,
                options=doc.options,
                examples=doc.examples,
                minimum=doc.minimum,
                maximum=doc.maximum,
                bound=False,
            )
        )
    description = info.get("description") or inspect.getdoc(fn) or ""
    risk = info.get("risk", "low")
    requires_approval = info.get("requires_approval")
    sink = bool(getattr(fn, "__olane_sink__", False))
    return MethodSpec(
        name=name,
        function=fn,
        sink=sink,
        streaming=sink or inspect.isasyncgenfunction(fn),
        description=description.strip(),
        params=params,
        risk=risk,
        category=info.get("category"),
        examples=info.get("examples"),
        requires_approval=(risk == "high") if requires_approval is None else requires_approval,
        takes_input=bool(info.get("incoming")) or incoming_param is not None,
        incoming_param=incoming_param,
    )


# --- the Tool base class --------------------------------------------------------

PREFIX = "_tool_"


class Tool:
    """Base class of everything a node serves at one olane address.

    Subclasses set `address` (or pass one) and define `_tool_<name>` methods.
    Built-in methods every node answers are defined here.
    """

    address: str = "o://tool"
    description: str = ""

    def __init__(self, address: "str | Address | None" = None) -> None:
        self.address = Address.parse(address or type(self).address)
        self.node: Any = None  # set by the node that serves this tool
        self.methods: dict[str, MethodSpec] = self._collect_methods()

    @classmethod
    def _collect_methods(cls) -> dict[str, MethodSpec]:
        methods: dict[str, MethodSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if attr.startswith(PREFIX) and len(attr) > len(PREFIX) and callable(value):
                    methods[attr[len(PREFIX):]] = _method_spec(attr[len(PREFIX):], value)
        return methods

    def resolve(self, method: str) -> MethodSpec:
        """The method called `method`, or 4011. Never looks up other attributes."""
        spec = self.methods.get(method) if isinstance(method, str) else None
        if spec is None:
            raise OlaneError(ErrorCode.INVALID_ACTION, "Selected method does not exist", {"method": method})
        return spec

    async def on_start(self) -> None:
        """Called once when the node starts serving this tool (inside trio)."""

    async def on_stop(self) -> None:
        """Called once when the node stops."""

    # --- built-ins ---------------------------------------------------------------

    @tool_method("Answers Pong! to show the node is alive.", category="builtin")
    async def _tool_ping(self, request: Request) -> dict[str, Any]:
        return {"message": "Pong!"}

    @tool_method("Who this tool is: its address, static address, transports and frame codecs.",
                 category="builtin")
    async def _tool_identify(self, request: Request) -> dict[str, Any]:
        node = self.node
        return {
            "address": self.address.value,
            "staticAddress": self.address.static.value,
            "transports": node.transports() if node else [],
            "peerId": node.peer_id if node else None,
            "codecs": list(CODECS),
            # several chunks per frame, input chunks from the caller, compressed answers: each
            # only when a caller asks (docs/protocol-extensions.md)
            "frames": ["batch", "input"],
            "compression": list(COMPRESSIONS),
            "streams": ["resume", "tap", "share"],  # live streams (docs/protocol-extensions.md)
        }

    @tool_method(
        "Lists the methods of this tool with their metadata. `tool` narrows the list to one method.",
        params={"tool": Param("one method name to describe", type="string")},
        category="builtin",
    )
    async def _tool_handshake(self, request: Request) -> dict[str, Any]:
        wanted = request.params.get("tool")
        methods = {name: spec.to_wire() for name, spec in self.methods.items() if not wanted or name == wanted}
        if wanted and not methods:
            raise OlaneError(ErrorCode.NOT_FOUND, f"no method {wanted!r} on {self.address}")
        return {"result": {"tools": list(methods), "methods": methods}, "type": "handshake"}

    @tool_method("Answers a friendly greeting.", category="builtin")
    async def _tool_hello_world(self, request: Request) -> dict[str, Any]:
        return {"message": "Hello, World!", "address": self.address.value}

    @tool_method("Counters of the node: uptime, active requests and streams, totals.", category="builtin")
    async def _tool_get_metrics(self, request: Request) -> dict[str, Any]:
        return self.node.metrics.snapshot(exclude_request=request.id) if self.node else {}

    @tool_method("Accepts a notification from another node (e.g. node:stopping).", category="builtin",
                 params={"eventType": Param("the event's type", type="string")})
    async def _tool_notify(self, request: Request) -> dict[str, Any]:
        return {"received": True}

    @tool_method("Asks the node to stop. Refused unless the node allows remote stop.",
                 risk="high", category="builtin")
    async def _tool_stop(self, request: Request) -> dict[str, Any]:
        if not (self.node and self.node.allow_remote_stop):
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, "this node does not allow remote stop")
        self.node.request_stop()
        return {"stopping": True}

    # --- live streams (docs/protocol-extensions.md, "Live streams") ---------------

    @tool_method("The streaming requests this node runs now that the caller may watch (its own; every one "
                 "for the node's admins): {streams: [{streamId, address, method, params, callerPeerId, started, "
                 "chunks, chunksPerSecond, taps, resumable}]}.", category="builtin")
    async def _tool_list_streams(self, request: Request) -> dict[str, Any]:
        return {"streams": self.node.streams.listing(request.peer_id)}

    @tool_method("Copies of a running stream's chunks, with its sequences, while it runs. A tap that reads "
                 "too slowly loses chunks; the next chunk it gets says how many (`_dropped`).",
                 params={"streamId": Param("the stream, from list_streams", type="string", required=True),
                         "from": Param("now: chunks from now on; buffer: also those the node still holds",
                                       type="string", options=["now", "buffer"], default="now")},
                 category="builtin")
    @serves_sink
    async def _tool_tap(self, request: Request):
        start = request.params.get("from") or "now"
        return self.node.streams.tap(request.peer_id, request.params.get("streamId"), start)

    @tool_method("Resume a resumable stream whose connection was lost: chunks after `after`, then live.",
                 params={"streamId": Param("the id its first chunk carried", type="string", required=True),
                         "after": Param("the last sequence received", type="number", required=True, minimum=0)},
                 category="builtin")
    @serves_sink
    async def _tool_resume(self, request: Request):
        after = request.params.get("after")
        if isinstance(after, float) and after.is_integer():
            after = int(after)
        return self.node.streams.resume(request.peer_id, request.params.get("streamId"), after)

    @tool_method("End a resumable stream now, rather than keep it for a resume (its caller gave up on it).",
                 params={"streamId": Param("the stream", type="string", required=True)}, category="builtin")
    async def _tool_stop_stream(self, request: Request) -> dict[str, Any]:
        return self.node.streams.stop(request.peer_id, request.params.get("streamId"))
