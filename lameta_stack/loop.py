"""A measured closed-loop run on the local stack as deployed (``bench/bench_xapp.py``, the
replica tests): bring the stack up with an observer subscribed before anything publishes,
let the emulator issue its requests, optionally SIGKILL a component part-way, wait until
every request seen is settled, collect the summary and the services' metrics, bring the
stack down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from lameta_stack.observe import Observer, stack_observer
from lameta_stack.stack import Stack, StackConfig, StackError


@dataclass(frozen=True)
class Kill:
    """SIGKILL ``component`` once ``share`` of the requests are settled (never restarted)."""

    component: str
    share: float = 0.5


def _metrics(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def run_loop(config: StackConfig, kill: Kill | None = None, settle_s: float = 60.0) -> dict:
    """Run ``config.requests`` requests through a fresh stack in ``config.directory``.

    Args:
        config: the stack (``requests`` must be set: the emulator stops after them).
        kill: a component to SIGKILL part-way (a crash; its unsettled work must survive).
        settle_s: how long, after the last expected request, the run waits for outcomes.

    Returns:
        The observer's summary, plus ``seconds``, ``killed`` (component, settled requests
        at the kill) and ``metrics`` (the ``/metrics`` text of each xApp replica still
        running and of the rApp).

    Raises:
        StackError: the stack did not come up.
    """
    if config.requests is None:
        raise ValueError("run_loop needs config.requests")
    stack = Stack(config.directory)
    holder: dict[str, Observer] = {}

    def start_observer(desc: dict) -> None:
        holder["observer"] = stack_observer(desc, stack.password("observer"), "loop-observer")
        holder["observer"].start()

    t0 = time.monotonic()
    try:
        desc = stack.up(config, on_broker=start_observer)
        observer = holder["observer"]
        killed: dict | None = None
        deadline = time.monotonic() + config.requests / config.rate * 2 + settle_s
        while time.monotonic() < deadline:
            seen, settled = observer.counts()
            if kill is not None and killed is None and settled >= kill.share * config.requests:
                stack.kill(kill.component)
                killed = {"component": kill.component, "settled": settled, "seen": seen}
            if seen >= config.requests and settled >= seen:
                break
            time.sleep(0.1)
        out = observer.summary()
        out["seconds"] = round(time.monotonic() - t0, 1)
        out["killed"] = killed
        alive = stack.status()
        urls = {
            name: f"{desc[name]['health']}/metrics"
            for name in alive
            if name.startswith("xapp") and alive[name]
        }
        urls["rapp"] = desc["rapp"]["metrics"]
        out["metrics"] = {name: _metrics(url) for name, url in urls.items()}
        return out
    finally:
        if "observer" in holder:
            holder["observer"].stop()
        if stack.file.exists():
            stack.down(grace=20)


__all__ = ["Kill", "StackError", "run_loop"]
