"""olane nodes in Python: tools served over libp2p (TCP, Noise, Yamux) on trio,
wire-compatible with TypeScript olane nodes, with native streaming."""
from .addresses import Address
from .client import StreamingCall
from .errors import ErrorCode, OlaneError, code_name
from .incoming import Incoming
from .limits import Limits
from .messages import Response
from .node import Client, Node
from .tools import Param, Request, StreamEnd, Tool, tool_method

__all__ = [
    "Address", "Client", "ErrorCode", "Incoming", "Limits", "Node", "OlaneError", "Param", "Request", "Response",
    "StreamEnd", "StreamingCall", "Tool", "code_name", "tool_method",
]
