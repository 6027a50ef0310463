"""Saved calls (collections): plain files people can read, edit and diff. Each
saved call is `<name>.olane.json` under the collections folder (next to the
console's settings, `collections/`; `$OLANE_COLLECTIONS_DIR` overrides); a
sub-folder is a group; the path is the identity (`group/name`). A file holds
only what differs from the defaults, keys in a fixed order:

    {"target": "lab", "address": "o://demo", "method": "stream_items", "params": {"count": 300}}

`target` is a named target (see config.Settings.targets) or a multiaddr;
`"stream": false` marks a call that answers once. Plain Python.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIX = ".olane.json"
KEY_ORDER = ("description", "target", "address", "method", "params", "stream")
_NAME = re.compile(r"^[\w.-]+(/[\w.-]+)*$")


def collections_dir() -> Path:
    override = os.environ.get("OLANE_COLLECTIONS_DIR")
    if override:
        return Path(override)
    from .config import config_path

    return config_path().parent / "collections"


class CollectionError(ValueError):
    pass


@dataclass
class SavedCall:
    name: str  # "group/name" (the file's path under the folder, without the suffix)
    method: str
    target: str | None = None
    address: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = True
    description: str | None = None

    @property
    def group(self) -> str:
        return self.name.rsplit("/", 1)[0] if "/" in self.name else ""

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        values = {"description": self.description, "target": self.target, "address": self.address,
                  "method": self.method, "params": self.params or None,
                  "stream": None if self.stream else False}
        return {k: values[k] for k in KEY_ORDER if values[k] is not None}

    @classmethod
    def from_json(cls, name: str, obj: Any) -> "SavedCall":
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str) or not obj["method"]:
            raise CollectionError(f"{name}: a saved call needs a \"method\"")
        params = obj.get("params") or {}
        if not isinstance(params, dict):
            raise CollectionError(f"{name}: \"params\" must be a JSON object")
        return cls(name=name, method=obj["method"], target=obj.get("target") or None,
                   address=obj.get("address") or None, params=params, stream=obj.get("stream", True) is not False,
                   description=obj.get("description") or None)


def check_name(name: str) -> str:
    name = name.strip().strip("/")
    if name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
    if not name or not _NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise CollectionError(f"{name!r}: use letters, digits, . _ - and / between a group and a name")
    return name


def path_for(name: str, root: Path | None = None) -> Path:
    return (root or collections_dir()) / (check_name(name) + SUFFIX)


def save(call: SavedCall, root: Path | None = None) -> Path:
    path = path_for(call.name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(call.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load(name: str, root: Path | None = None) -> SavedCall:
    """A saved call by `group/name`, or by its bare name when only one group has it."""
    root = root or collections_dir()
    path = path_for(name, root)
    if not path.exists():
        matches = [c for c in load_all(root)[0] if c.short_name == check_name(name)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise CollectionError(f"{name!r} is in several groups: " + ", ".join(c.name for c in matches))
        raise CollectionError(f"no saved call {name!r} in {root}")
    return _read(path, root)


def _read(path: Path, root: Path) -> SavedCall:
    name = path.relative_to(root).as_posix()[: -len(SUFFIX)]
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CollectionError(f"{path}: {exc}") from None
    return SavedCall.from_json(name, obj)


def load_all(root: Path | None = None) -> tuple[list[SavedCall], list[str]]:
    """Every saved call, by group then name, and the problems of files that could not be read
    (reported, never silently skipped)."""
    root = root or collections_dir()
    calls, problems = [], []
    if root.is_dir():
        for path in sorted(root.rglob("*" + SUFFIX)):
            try:
                calls.append(_read(path, root))
            except CollectionError as exc:
                problems.append(str(exc))
    calls.sort(key=lambda c: (c.group, c.short_name))
    return calls, problems


def delete(name: str, root: Path | None = None) -> None:
    path_for(name, root).unlink()
