"""Write one generated section into a Markdown file, leaving the rest of the file as it is.

The only code that edits a documentation file: the report passes the file (the README
today) and the heading of the section to place its own after.
"""

from __future__ import annotations

import re
from pathlib import Path


def _section(heading: str) -> re.Pattern[str]:
    """A level-2 section whose heading starts with ``heading``, up to the next one or the end."""
    return re.compile(rf"^{re.escape(heading)}[^\n]*(?:\n|\Z).*?(?=^## |\Z)", re.M | re.S)


def write_section(path: Path, section: str, after: str | None = None) -> None:
    """Put ``section`` (Markdown opening with its ``## `` heading) into the file ``path``.

    A section with the same heading is replaced in place. Otherwise the section goes right
    after the section whose heading starts with ``after`` when the file has one, else at
    the end (a missing file is created).
    """
    section = section.rstrip("\n") + "\n"
    heading = section.split("\n", 1)[0]
    if not heading.startswith("## "):
        raise ValueError(f"a section opens with a level-2 heading, got {heading!r}")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    own = _section(heading)
    anchor = _section(after).search(text) if after else None
    if own.search(text):
        text = own.sub(lambda _: section + "\n", text, count=1)
    elif anchor is not None:
        before, rest = text[: anchor.end()].rstrip("\n"), text[anchor.end() :]
        text = before + "\n\n" + section + ("\n" + rest if rest else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
