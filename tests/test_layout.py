"""The package layout's import contract (docs: "Layout"), checked on the source.

Every ``import`` and ``from ... import`` in a package, at module level or inside a
function, counts. A layer may import the layers below it, never one above or beside it;
the deployed services load no training framework.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "lameta_proto": set(),
    "agentnet": set(),
    "servicekit": {"agentnet", "lameta_proto"},
    "llmkit": {"servicekit"},
    "sim_ric": {"agentnet", "servicekit", "lameta_proto"},
    "rapp_intent": {"agentnet", "servicekit", "llmkit", "lameta_proto"},
    "xapp_composer": {"agentnet", "servicekit", "llmkit", "lameta_proto"},
    "rapp_negotiation": {"agentnet", "servicekit", "llmkit", "lameta_proto"},
    "xapp_guard": {"agentnet", "servicekit", "llmkit", "lameta_proto"},
    "lameta_stack": {"agentnet", "servicekit", "lameta_proto"},
    "lameta_studies": {
        "agentnet", "servicekit", "llmkit", "lameta_proto", "sim_ric", "rapp_intent",
        "xapp_composer", "rapp_negotiation",
    },
}  # fmt: skip
"""Package -> the project packages it may import (besides itself)."""

PROJECT = set(ALLOWED)


def _package_dir(name: str) -> Path:
    return ROOT / "proto" / name if name == "lameta_proto" else ROOT / name


def project_imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) of every import of another project package."""
    out = []
    for path in sorted(_package_dir(package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT and top != package:
                    out.append((str(path.relative_to(ROOT)), node.lineno, name))
    return out


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if _package_dir(p).is_dir()))
def test_no_package_imports_across_or_up_the_layers(package: str) -> None:
    crossing = [
        f"{file}:{line}: imports {name}"
        for file, line, name in project_imports(package)
        if name.split(".")[0] not in ALLOWED[package]
    ]
    assert not crossing, f"{package} crosses the layout:\n" + "\n".join(crossing)


def test_the_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """A deliberately crossing import inside a function is found (the contract can fail)."""
    probe = ROOT / "xapp_composer" / "_layout_probe.py"
    probe.write_text("def f():\n    from rapp_intent import settings\n    return settings\n")
    try:
        found = [
            n for f, _, n in project_imports("xapp_composer") if f.endswith("_layout_probe.py")
        ]
    finally:
        probe.unlink()
    assert found == ["rapp_intent"]


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)  # fmt: skip
    return {m.split(".")[0] for m in done.stdout.split()}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # The deployed xApp: the control loop, its ONNX runtime and everything they load.
        (
            "xapp_composer.loop",
            {"torch", "torch_geometric", "transformers", "rapp_intent", "sim_ric", "llmkit"},
        ),
        ("xapp_composer.cli", {"torch", "torch_geometric", "transformers", "rapp_intent"}),
        # The rApp's server runs torch models but no training graph library, no other app.
        ("rapp_intent.server", {"torch_geometric", "xapp_composer", "sim_ric"}),
        # The deployed guard: its service, sensor and ONNX detector load no torch.
        (
            "xapp_guard.cli, xapp_guard.service, xapp_guard.sensor, xapp_guard.runtime",
            {
                "torch",
                "torch_geometric",
                "transformers",
                "llmkit",
                "rapp_intent",
                "xapp_composer",
                "sim_ric",
                "rapp_negotiation",
            },
        ),
        # The emulator service: numpy, scipy and the transport only.
        (
            "sim_ric.service",
            {
                "torch",
                "torch_geometric",
                "transformers",
                "onnxruntime",
                "rapp_intent",
                "xapp_composer",
            },
        ),
    ],
)
def test_services_load_no_training_framework_and_no_other_app(module: str, forbidden) -> None:
    loaded = _modules_after_import(module) & set(forbidden)
    assert not loaded, f"importing {module} loads {sorted(loaded)}"


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (rootdir-relative, no packages): two files
    with one name stop the whole collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
