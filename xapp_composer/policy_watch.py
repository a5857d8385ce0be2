"""Hot reload of the xApp's policy: notice a rewritten policy, verify it, swap it in.

The xApp's housekeeping thread calls :meth:`PolicyWatcher.poll` periodically
(``XAPP_POLICY_RELOAD_PERIOD``); a verified new policy goes to the decision core's
:meth:`~xapp_composer.control.ControlCore.install_runtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from xapp_composer.artefacts import policy_files
from xapp_composer.control import ControlCore
from xapp_composer.metrics import XappMetrics
from xapp_composer.runtime import PolicyRuntime

log = structlog.get_logger("xapp_composer.policy_watch")


def policy_signature(path: Path) -> tuple:
    """(name, mtime, size) of the policy's files: changes when any of them is rewritten."""
    out = []
    for p in policy_files(path):
        try:
            st = p.stat()
        except FileNotFoundError:  # removed between glob and stat: the next poll sees it
            continue
        out.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


class PolicyWatcher:
    """Hot reload: notices a rewritten policy, verifies it and swaps it in.

    A change is acted upon once the files have stayed the same for one poll (an export
    writes several files). A new policy that fails to load (sha256 mismatch with its
    card, a missing companion, a broken graph) is rejected and logged, and the serving
    policy stays; the same files are not tried again until they change.

    Args:
        path: the policy file.
        core: the decision core whose policy is swapped.
        loader: builds a verified :class:`PolicyRuntime` from a path.
        metrics: reload counts.
    """

    def __init__(
        self,
        path: Path,
        core: ControlCore,
        loader: Callable[[Path], PolicyRuntime],
        metrics: XappMetrics,
    ):
        self.path = Path(path)
        self.core = core
        self.loader = loader
        self.metrics = metrics
        self._settled = policy_signature(self.path)  # what the serving policy was made of
        self._seen = self._settled

    def poll(self) -> str:
        """Check once.

        Returns:
            ``"unchanged"``, ``"settling"``, ``"loaded"``, ``"same_version"`` or
            ``"rejected"``.
        """
        sig = policy_signature(self.path)
        if sig == self._settled:
            self._seen = sig
            return "unchanged"
        if sig != self._seen:
            self._seen = sig
            return "settling"
        self._settled = sig
        try:
            runtime = self.loader(self.path)
        except Exception as exc:  # any failure keeps the serving policy (logged, counted)
            self.metrics.reload("rejected")
            log.error(
                "policy_reload_rejected",
                path=str(self.path),
                error=f"{type(exc).__name__}: {exc}",
                serving=self.core.runtime.version,
            )
            return "rejected"
        if runtime.version == self.core.runtime.version:
            self.metrics.reload("same_version")
            return "same_version"
        old = self.core.runtime.version
        self.core.install_runtime(runtime)
        self.metrics.reload("loaded")
        log.info("policy_reloaded", old=old, new=runtime.version, provider=runtime.provider)
        return "loaded"
