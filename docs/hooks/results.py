"""Results tables of the docs, rendered from the JSON files the named commands write.

Each renderer takes the repository root and returns Markdown; the page states the
command that produced the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

RENDERERS: dict[str, Callable[[Path], str]] = {}


def render(name: str, root: Path) -> str:
    """The table called ``name``.

    Raises:
        KeyError: no such table.
    """
    if name not in RENDERERS:
        raise KeyError(f"no results table {name!r}; known: {sorted(RENDERERS)}")
    return RENDERERS[name](root)
