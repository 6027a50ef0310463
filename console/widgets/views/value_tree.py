"""A value seen whole: a folding JSON tree with colour (Textual's Tree, which draws only
the visible lines), children made when a node is first opened, so a 5,000-row batch
opens at once. Bytes show as their text when they are UTF-8 (one line per line of
text), else as a hex dump, with their size; a base64 string (bytes sent to a JSON
client, e.g. files `read`) shows the text it stands for. `c` copies the value under
the cursor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from console.core.views.values import BYTES, children, decoded_string, describe_bytes, size_text, summary, \
    to_json_text

PAGE = 1_000  # children made at a time (the rest behind a "more" node)
TEXT_LINES = 5_000  # lines of a text shown


@dataclass
class Item:
    key: str | None
    value: Any
    path: str
    loaded: bool = False
    more_from: int | None = None  # a "more" node: the parent's children from this index


def _style(value: Any) -> str:
    if isinstance(value, str):
        return "green"
    if isinstance(value, bool) or value is None:
        return "magenta"
    if isinstance(value, (int, float)):
        return "cyan"
    if isinstance(value, BYTES):
        return "yellow"
    return "dim"


def label(key: str | None, value: Any) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if key is not None:
        text.append(key, style="bold #7aa2f7")
        text.append(": ")
    if isinstance(value, str):
        decoded = decoded_string(value)
        if decoded is not None:
            raw, kind, _ = decoded
            text.append(f"<base64: {size_text(len(raw))}, {'UTF-8 text' if kind == 'text' else 'binary'}>",
                        style="yellow")
            return text
        first = value.split("\n", 1)[0]
        shown = first if len(first) <= 200 else first[:200] + "…"
        text.append(f'"{shown}"' + (" …" if "\n" in value else ""), style="green")
        return text
    text.append(summary(value), style=_style(value))
    return text


def _expandable(value: Any) -> bool:
    if isinstance(value, (dict, list, tuple)):
        return bool(value)
    if isinstance(value, BYTES):
        return True
    if isinstance(value, str):
        return "\n" in value or len(value) > 200 or decoded_string(value) is not None
    return False


class ValueTree(Tree[Item]):
    DEFAULT_CSS = """
    ValueTree { height: 1fr; background: $surface; }
    """
    BINDINGS = [Binding("c", "copy_value", "Copy value", id="copy-value")]

    def __init__(self, value: Any, title: str = "value", **kwargs) -> None:
        super().__init__(label(None, value) if not _expandable(value) else Text(title, style="bold"),
                         data=Item(None, value, ""), **kwargs)
        self.value = value
        self.show_root = True
        self.guide_depth = 3

    def on_mount(self) -> None:
        self._load(self.root)
        self.root.expand()
        # open the first level of containers too, when small: the usual record reads at once
        for child in self.root.children:
            item = child.data
            if item is not None and isinstance(item.value, (dict, list)) and len(item.value) <= 12:
                self._load(child)
                child.expand()
            elif item is not None and isinstance(item.value, BYTES) or (
                    item is not None and isinstance(item.value, str) and decoded_string(item.value) is not None):
                self._load(child)
                child.expand()

    def _add(self, parent: TreeNode[Item], key: str | None, value: Any, path: str) -> None:
        if _expandable(value):
            parent.add(label(key, value), data=Item(key, value, path), allow_expand=True)
        else:
            parent.add_leaf(label(key, value), data=Item(key, value, path))

    def _load(self, node: TreeNode[Item], start: int = 0) -> None:
        item = node.data
        if item is None or (item.loaded and start == 0):
            return
        item.loaded = True
        value = item.value
        if isinstance(value, BYTES):
            kind, shown = describe_bytes(value)
            self._text_lines(node, shown, f"{'text' if kind == 'text' else 'hex dump'}, {size_text(len(value))}")
            return
        if isinstance(value, str):
            decoded = decoded_string(value)
            if decoded is not None:
                raw, kind, shown = decoded
                self._text_lines(node, shown, f"{'text' if kind == 'text' else 'hex dump'} of the base64, "
                                              f"{size_text(len(raw))}")
            else:
                self._text_lines(node, value, f"{len(value):,} characters")
            return
        kids = children(value)
        for key, child in kids[start:start + PAGE]:
            self._add(node, key, child, f"{item.path}.{key}" if item.path else key)
        if len(kids) > start + PAGE:
            node.add_leaf(Text(f"… {len(kids) - start - PAGE:,} more (Enter shows them)", style="dim italic"),
                          data=Item(None, None, item.path, more_from=start + PAGE))

    @staticmethod
    def _text_lines(node: TreeNode[Item], text: str, what: str) -> None:
        node.add_leaf(Text(f"({what})", style="dim italic"), data=Item(None, text, node.data.path))
        lines = text.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()  # the newline that ends the last line opens no line of its own
        for line in lines[:TEXT_LINES]:
            node.add_leaf(Text(line, style="green", no_wrap=True), data=Item(None, text, node.data.path))
        if len(lines) > TEXT_LINES:
            node.add_leaf(Text(f"… {len(lines) - TEXT_LINES:,} more lines", style="dim italic"))

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        self._load(event.node)

    def _on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        item = event.node.data
        if item is not None and item.more_from is not None and event.node.parent is not None:
            parent = event.node.parent
            start = item.more_from
            event.node.remove()
            self._load(parent, start)

    def text_lines(self) -> list[str]:
        """Every line the tree shows now (for tests and screenshots)."""
        out = []
        for line in range(self.last_line + 1):
            node = self.get_node_at_line(line)
            if node is not None:
                out.append(node.label.plain if isinstance(node.label, Text) else str(node.label))
        return out

    def action_copy_value(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None:
            return
        value = node.data.value
        text = to_json_text(value)
        self.app.copy_to_clipboard(text)
        where = node.data.path or "the value"
        self.notify(f"{where}: {len(text):,} characters", title="copied")
