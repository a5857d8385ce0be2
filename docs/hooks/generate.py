"""MkDocs hook: tables generated at build time, never pasted.

A page asks for a table with a directive on its own line:

- ``{{ settings("sim_ric.settings:SimSettings") }}``: every field of a settings class
  (flag, environment variable, type, default, description), from the class itself;
- ``{{ results("name") }}``: a results table rendered by ``docs/hooks/results.py`` from
  the JSON file a command wrote (the page names the command beside the table).

An unknown directive, a missing class or a missing results file fails the build
(``mkdocs build --strict``).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r'^\{\{\s*(\w+)\("([^"]+)"\)\s*\}\}[ \t]*$', re.M)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_table(target: str) -> str:
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    prefix = (cls.model_config.get("env_prefix") or "").upper()
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for field, info in cls.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if hasattr(default, "get_secret_value"):
            default = "(secret)"
        shown = "—" if default is None else f"`{default}`"
        rows.append(
            f"| `--{field.replace('_', '-')}` | `{prefix}{field.upper()}` | {_cell(shown)} "
            f"| {_cell(info.description or '')} |"
        )
    return "\n".join(rows)


def _expand(match: re.Match) -> str:
    kind, arg = match.group(1), match.group(2)
    if kind == "settings":
        return settings_table(arg)
    if kind == "results":
        sys.path.insert(0, str(Path(__file__).parent))
        import results

        return results.render(arg, ROOT)
    raise ValueError(f"unknown docs directive {kind!r}")


def on_page_markdown(markdown: str, page, config, files) -> str:
    return DIRECTIVE.sub(_expand, markdown)
