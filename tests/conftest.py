"""Test-wide settings: hypothesis profiles for the fuzz tests.

``make test`` runs each fuzz test with a few hundred examples (profile ``ci``); the long
run is ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -m fuzz`` (10,000 examples
each).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
