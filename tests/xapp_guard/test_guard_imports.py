"""The guard service, like the xApp, runs without a training framework: its command line,
service, runtime and evaluation load no torch (onnxruntime scores the windows)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "code",
    [
        "import xapp_guard.service, xapp_guard.runtime, xapp_guard.sensor",
        "import xapp_guard.cli as c; c.build_parser()",
        "import xapp_guard.evaluate",
    ],
)
def test_serving_paths_load_no_training_framework(code: str) -> None:
    probe = f"{code}; import sys; print(sorted(m for m in ('torch', 'transformers', "
    probe += "'torch_geometric') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
