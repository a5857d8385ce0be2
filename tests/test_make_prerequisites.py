"""``make test`` checks for Mosquitto before anything else and, without it, stops with the
one-line install command rather than failing the MQTT tests one by one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> subprocess.CompletedProcess:
    # A top-level make, also when the suite itself runs under `make test` (CI): an
    # inherited MAKELEVEL turns make's own error line into "make[1]: ...".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip


def test_without_mosquitto_make_test_stops_first_with_the_install_command() -> None:
    done = _make("test", "MOSQUITTO=")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make:")]
    assert lines == [
        "make test needs Mosquitto: sudo apt-get install mosquitto mosquitto-clients"
        " (macOS: brew install mosquitto)"
    ], done.stderr
    # Nothing else ran: no lint, no docs build, no tests.
    assert done.stdout == ""


def test_with_mosquitto_the_check_passes() -> None:
    done = _make("mosquitto-check", "MOSQUITTO=/usr/sbin/mosquitto")
    assert done.returncode == 0 and done.stderr == "", done.stderr
