"""The console's Textual themes: a branded dark theme and a light one. Each adds
the stream colours the chunk log uses ($stream-gap, $stream-reorder, $stream-error)."""
from __future__ import annotations

from textual.theme import Theme

STREAM_DEFAULTS = {"stream-gap": "#ff8a3d", "stream-reorder": "#e5c07b", "stream-error": "#ff5c6c"}

OLANE_DARK = Theme(
    name="olane-dark",
    primary="#7c6cff",
    secondary="#36c5d6",
    accent="#b18cff",
    warning="#ffb454",
    error="#ff5c6c",
    success="#4fd18b",
    foreground="#e6e4f0",
    background="#12111a",
    surface="#1a1926",
    panel="#2a2840",
    dark=True,
    variables={**STREAM_DEFAULTS, "footer-key-foreground": "#b18cff"},
)

OLANE_LIGHT = Theme(
    name="olane-light",
    primary="#5a46e0",
    secondary="#0f8a9d",
    accent="#7a4fe0",
    warning="#b06a00",
    error="#c8102e",
    success="#1f8a4c",
    foreground="#1c1b29",
    background="#f7f6fb",
    surface="#ffffff",
    panel="#e4e1f2",
    dark=False,
    variables={"stream-gap": "#c25400", "stream-reorder": "#8a6d00", "stream-error": "#c8102e",
               "footer-key-foreground": "#5a46e0"},
)

THEMES = (OLANE_DARK, OLANE_LIGHT)
DEFAULT_THEME = OLANE_DARK.name
