"""Console settings: one JSON file in the user's config directory (or the path in
$OLANE_CONSOLE_CONFIG): saved targets, the chosen theme, whether quitting with
streams running asks first (`confirm_quit`), and per method (keyed
`"<address> <method>"`) the view a stream opens in and the paths of its fields and
chart views."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import platformdirs

from tool_library.data_dir import data_dir  # one place decides where data lives

APP_NAME = "olane-console"


def config_path() -> Path:
    override = os.environ.get("OLANE_CONSOLE_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.json"




@dataclass
class SavedTarget:
    multiaddr: str
    address: str | None = None
    name: str | None = None  # an alias shown instead of the peer id; `--target NAME` on the CLI


@dataclass
class Settings:
    theme: str = "olane-dark"
    targets: list[SavedTarget] = field(default_factory=list)
    confirm_quit: bool = True  # ask before quitting while calls are running
    views: dict[str, str] = field(default_factory=dict)  # method key -> log / fields / table / chart
    fields: dict[str, list[str]] = field(default_factory=dict)  # method key -> JSON paths shown as columns
    charts: dict[str, list[str]] = field(default_factory=dict)  # method key -> JSON paths charted
    record_calls: bool = False  # keep a recording of every call in the data dir
    record_cap_mb: int = 200  # recordings kept there, oldest pruned first

    @classmethod
    def load(cls, path: Path | None = None) -> "Settings":
        path = path or config_path()
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        targets = [SavedTarget(str(t["multiaddr"]), t.get("address") or None, t.get("name") or None)
                   for t in raw.get("targets") or [] if isinstance(t, dict) and t.get("multiaddr")]
        cap = raw.get("record_cap_mb")
        return cls(theme=str(raw.get("theme") or cls.theme), targets=targets,
                   confirm_quit=raw.get("confirm_quit", True) is not False,
                   views=_str_map(raw.get("views")), fields=_paths_map(raw.get("fields")),
                   charts=_paths_map(raw.get("charts")),
                   record_calls=bool(raw.get("record_calls", False)),
                   record_cap_mb=cap if isinstance(cap, int) and cap > 0 else cls.record_cap_mb)

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)  # never leave a half-written file
        return path

    def remember_view(self, key: str, view: str) -> bool:
        """Remember the view a method's streams open in; True when that changed something."""
        if self.views.get(key) == view:
            return False
        self.views[key] = view
        return True

    def remember_target(self, multiaddr: str, address: str | None, name: str | None = None) -> None:
        existing = next((t for t in self.targets if t.multiaddr == multiaddr and t.address == address), None)
        if existing is None:
            self.targets.append(SavedTarget(multiaddr, address, name or None))
        elif name:
            existing.name = name
        if name:  # a name means one node
            for t in self.targets:
                if t.name == name and t.multiaddr != multiaddr:
                    t.name = None

    def resolve_target(self, text: str) -> tuple[str, str | None]:
        """A target's name -> (multiaddr, address); anything else is taken as a multiaddr."""
        for t in self.targets:
            if t.name and t.name == text:
                return t.multiaddr, t.address
        return text, None

    def name_of(self, multiaddr: str) -> str | None:
        return next((t.name for t in self.targets if t.multiaddr == multiaddr and t.name), None)

    def forget_target(self, multiaddr: str) -> None:
        self.targets = [t for t in self.targets if t.multiaddr != multiaddr]


def method_key(address: str, method: str) -> str:
    """How settings name a method: `"o://sqlite query"`."""
    return f"{address} {method}"


def _str_map(raw) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)}


def _paths_map(raw) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): [str(p) for p in v if isinstance(p, str) and p]
            for k, v in raw.items() if isinstance(v, list)}
