"""Running a command line as a user would, for tests of its user errors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence


def user_error(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> str:
    """Run ``argv`` and return its one line on stderr, checking that it is a user error:
    exit code 2, exactly one line on stderr, no traceback, nothing on stdout.

    Args:
        argv: the command and its arguments.
        env: the environment (default: this process's).
        cwd: the working directory.
    """
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == "", proc.stdout
    return lines[0]
