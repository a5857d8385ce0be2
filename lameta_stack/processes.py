"""Background processes of a stack: started detached, recorded, stopped for sure.

A record holds the pid and the process's start time (``/proc/<pid>/stat``), so a later
``down`` never signals an unrelated process that got the same pid after a reboot or a
crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPTS = {
    "sim-ric": "sim_ric.cli",
    "rapp-intent": "rapp_intent.cli",
    "xapp-composer": "xapp_composer.cli",
    "rapp-negotiation": "rapp_negotiation.cli",
    "xapp-guard": "xapp_guard.cli",
}
"""Console scripts the stack runs, and their modules (``python -m`` when the script is not
installed beside this interpreter)."""


def command_for(script: str) -> list[str]:
    """The console script beside this interpreter, else ``python -m`` its module."""
    exe = Path(sys.executable).with_name(script)
    if exe.exists():
        return [str(exe)]
    if script in SCRIPTS:
        return [sys.executable, "-m", SCRIPTS[script]]
    return [script]


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: what it is, its pid and start time, its log."""

    name: str
    pid: int
    started: str
    log: str
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """True while this very process runs (not another one with the same pid)."""
        start = _start_time(self.pid)
        if start is None or start != self.started:
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process is still this one; True when sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` seconds. True when it is gone."""
        if self.signal(signal.SIGTERM):
            deadline = time.monotonic() + grace
            while self.alive() and time.monotonic() < deadline:
                _reap(self.pid)
                time.sleep(0.05)
        if self.signal(signal.SIGKILL):
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                _reap(self.pid)
                time.sleep(0.05)
        _reap(self.pid)
        return not self.alive()

    def to_json(self) -> dict:
        return {**asdict(self), "argv": list(self.argv)}

    @classmethod
    def from_json(cls, obj: Mapping) -> ProcessRecord:
        return cls(
            name=str(obj["name"]),
            pid=int(obj["pid"]),
            started=str(obj["started"]),
            log=str(obj["log"]),
            argv=tuple(obj.get("argv", ())),
        )


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(
    name: str, argv: Sequence[str], log: Path, env: Mapping[str, str], *, cwd: Path = ROOT
) -> ProcessRecord:
    """Start ``argv`` in its own session (it outlives this process), output to ``log``.

    Raises:
        OSError: the program cannot be started.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
    started = _start_time(proc.pid) or ""
    return ProcessRecord(name, proc.pid, started, str(log), tuple(argv))
