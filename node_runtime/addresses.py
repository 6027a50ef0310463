"""olane addresses (`o://a/b`) and the libp2p protocol ids they map to (PROTOCOL.md section 2)."""
from __future__ import annotations

from dataclasses import dataclass

REUSE_PROTOCOL = "/o/reuse"
RESERVED = ("o://leader", "o://registry", "o://lane", "o://intelligence")


@dataclass(frozen=True)
class Address:
    """An olane address such as `o://leader/worker`."""

    value: str

    def __post_init__(self) -> None:
        if not self.value.startswith("o://") or len(self.value) <= 4:
            raise ValueError(f"not an olane address: {self.value!r} (expected o://name)")
        segments = self.value[4:].split("/")
        if any(not s for s in segments):
            raise ValueError(f"empty segment in olane address {self.value!r}")

    @classmethod
    def parse(cls, text: "str | Address") -> "Address":
        if isinstance(text, Address):
            return text
        text = text.strip()
        if text.startswith("/o/"):
            return cls.from_protocol(text)
        if not text.startswith("o://"):
            text = "o://" + text
        return cls(text.rstrip("/"))

    @classmethod
    def from_protocol(cls, protocol: str) -> "Address":
        if not protocol.startswith("/o/"):
            raise ValueError(f"not an olane protocol id: {protocol!r}")
        return cls("o://" + protocol[3:])

    @property
    def segments(self) -> list[str]:
        return self.value[4:].split("/")

    @property
    def protocol(self) -> str:
        """`o://leader/registry` -> `/o/leader/registry` (no version suffix)."""
        return "/o/" + self.value[4:]

    @property
    def static(self) -> "Address":
        """The static address: the last segment (`o://leader/worker` -> `o://worker`)."""
        return Address("o://" + self.segments[-1])

    @property
    def is_nested(self) -> bool:
        return len(self.segments) > 1

    def child(self, name: str) -> "Address":
        return Address(self.value + "/" + name.strip("/"))

    def matches(self, other: "str | Address") -> bool:
        """True when `other` names this address, by full or static form."""
        other_value = other.value if isinstance(other, Address) else str(other)
        return other_value in (self.value, self.static.value)

    def __str__(self) -> str:
        return self.value


def olane_protocols(protocols: "list[str] | tuple[str, ...]") -> list[str]:
    """The `/o/...` protocols a peer advertises that name a tool: `/o/reuse` and
    static aliases of a longer address are left out."""
    tools = [p for p in protocols if p.startswith("/o/") and p != REUSE_PROTOCOL]
    full = [p for p in tools if p.count("/") > 2]
    aliases = {"/o/" + p.rsplit("/", 1)[1] for p in full}
    return sorted(p for p in tools if p not in aliases or p in full)
