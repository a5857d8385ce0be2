"""The read-only reference material beside the checkout (``../shared``: specs, the dev
set, the golden QoE cases, the O-RAN schemas).

A developer's clone may not have it: its tests then skip. CI always has it, so under
``CI=true`` a missing file fails the test instead of skipping it silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def in_ci() -> bool:
    """True under CI (``CI`` set to a true value, as CI services and ``.ci/run`` do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_file(*parts: str) -> Path:
    """``../shared/<parts>``; skips the test when absent, fails it under CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if in_ci():
            pytest.fail(f"{path} is missing; CI runs with ../shared beside the checkout")
        pytest.skip(f"{path} not present (reference material beside the checkout)")
    return path
