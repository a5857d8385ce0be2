"""A console script as a real subprocess, its output kept in a file for the assertions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

_MODULES = {
    "sim-ric": "sim_ric.cli",
    "rapp-intent": "rapp_intent.cli",
    "xapp-composer": "xapp_composer.cli",
    "rapp-negotiation": "rapp_negotiation.cli",
}


def script_command(script: str) -> list[str]:
    """The console script beside this interpreter, else ``python -m`` its module."""
    exe = Path(sys.executable).with_name(script)
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", _MODULES[script]]


class ManagedProcess:
    """``script args...`` started at once; stdout and stderr go to a log file in ``workdir``.

    Every way of ending it (:meth:`terminate`, :meth:`wait`, :meth:`kill`) leaves no
    process behind and closes the log.
    """

    def __init__(
        self, script: str, args: Sequence[str], workdir: Path, env: dict[str, str] | None = None
    ):
        self.log_path = workdir / f"{script}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, **OFFLINE, **(env or {})}
        self.proc = subprocess.Popen(
            [*script_command(script), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict]:
        """The JSON log lines."""
        out = []
        for line in self.logs().splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)
