"""``lameta-stack chaos``: a closed-loop run under faults and attacks, and what it lost.

Brings up its own stack (``lameta-stack up`` in a fresh directory, the emulator with a
journal), watches it with the read-only observer, and injects on a schedule it prints:

- broker SIGKILL and restart (three times; the local broker keeps no persistence),
- rApp, xApp and emulator SIGKILL and restart (once each),
- every 100 requests a forged control decision and a forged outcome from a client that
  may not publish them (the observer's identity),
- garbage payloads from authorised identities (a compromised emulator and xApp), an
  oversize payload above the broker's limit and a request whose prompt is far above the
  rApp's limit.

It prints one JSON object: ``requests``, ``settled``, ``lost``, ``duplicated``,
``forged_accepted``, ``fallbacks``, ``p50_ms``, ``p99_ms`` (request to first decision,
as the observer sees it, over the whole run), the same percentiles outside the fault
windows, and ``faults`` (what was injected, when, at which request count).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lameta_stack.observe import Observer
from lameta_stack.stack import Stack, StackConfig, wait_for
from servicekit import codec
from servicekit.mqtt import BrokerUrl, MqttClient, TlsOptions, Topics

FORGED_MARK = "forged-by-chaos"
"""Written into every forged message, so its effect can be found afterwards."""

SCHEDULE: tuple[tuple[float, str], ...] = (
    (0.08, "garbage"),
    (0.15, "broker_kill"),
    (0.25, "rapp_kill"),
    (0.35, "oversize"),
    (0.45, "broker_kill"),
    (0.55, "xapp_kill"),
    (0.65, "sim_kill"),
    (0.75, "broker_kill"),
)
"""(share of the requests issued, fault) in order."""

WINDOW_S = {"broker_kill": 8.0, "rapp_kill": 25.0, "xapp_kill": 8.0, "sim_kill": 8.0}
"""How long after a fault the loop counts as disturbed (for the calm percentiles)."""


@dataclass
class ChaosRun:
    """One chaos run's state."""

    stack: Stack
    desc: dict
    observer: Observer
    faults: list[dict] = field(default_factory=list)
    windows: list[tuple[int, int]] = field(default_factory=list)
    forged_sent: int = 0

    def client(self, user: str) -> MqttClient:
        b = self.desc["broker"]
        url = BrokerUrl("mqtts", b["host"], b["port"], user, self.stack.password(user))
        return MqttClient(
            url, user, tls=TlsOptions(ca_certs=b["ca_file"]), reconnect_max_delay_s=1.0
        )

    def note(self, kind: str, **extra) -> None:
        seen, settled = self.observer.counts()
        now = time.time_ns()
        self.faults.append(
            {
                "fault": kind,
                "at_s": round(time.monotonic() - self.t0, 2),
                "requests_seen": seen,
                "settled": settled,
                **extra,
            }
        )
        if kind in WINDOW_S:
            self.windows.append((now, now + int(WINDOW_S[kind] * 1e9)))

    t0: float = field(default_factory=time.monotonic)


def _publish_as(run: ChaosRun, user: str, items: list[tuple[str, bytes]]) -> None:
    client = run.client(user)
    client.start()
    try:
        if client.wait_connected(5):
            for topic, payload in items:
                client.publish(topic, payload, qos=1)
            client.flush(5)
    finally:
        client.stop(timeout=2)


def _forge(run: ChaosRun, topics: Topics) -> None:
    """A forged rejection for the newest request and a forged 'served' outcome, from the
    observer's identity (allowed to read, not to publish)."""
    rid = run.observer.latest_request() or "none"
    decision = codec.ControlDecision(
        request_id=rid, rejection=FORGED_MARK, policy_version=FORGED_MARK
    )
    outcome = codec.Outcome(
        request_id=rid,
        accepted=True,
        resolved=True,
        code="served",
        reason=FORGED_MARK,
        prompt=f"{FORGED_MARK} poison",
        app="immersive",
        predicted=[0.97, 0.01, 0.01, 0.01],
        reward=1e6,
        chain=[0, 1, 2],
    )
    _publish_as(
        run,
        "observer",
        [(topics.control, codec.encode(decision)), (topics.outcomes, codec.encode(outcome))],
    )
    run.forged_sent += 2


def _inject(run: ChaosRun, fault: str, topics: Topics) -> None:
    st = run.stack
    if fault == "broker_kill":
        st.kill("broker")
        time.sleep(1.0)
        st.restart("broker")
    elif fault in ("rapp_kill", "xapp_kill", "sim_kill"):
        name = fault.split("_")[0]
        st.kill(name)
        st.restart(name)
    elif fault == "garbage":
        _publish_as(run, "sim-ric", [(topics.requests, b"\x00\xffnot a request")])
        _publish_as(run, "xapp-composer", [(topics.control, b"\x17garbage decision")])
    elif fault == "oversize":
        huge = b"x" * (5 * 1024 * 1024)
        big_prompt = codec.ServiceRequest(
            request_id="chaos-bigprompt", prompt="y" * 200_000, app="qa", chain_types=[1, 2, 3]
        )
        _publish_as(
            run, "sim-ric", [(topics.requests, huge), (topics.requests, codec.encode(big_prompt))]
        )
    run.note(fault)


def _forged_accepted(run: ChaosRun) -> int:
    """Forged messages that took effect: a forged decision settling a request, or a
    forged outcome reaching the rApp's memory."""
    with run.observer.lock:
        settled_by_forgery = sum(
            1 for outs in run.observer.resolving.values() for o in outs if FORGED_MARK in o.reason
        )
    memory = Path(run.stack.state_dir) / "rapp-memory.sqlite3"
    poisoned = 0
    if memory.exists():
        with contextlib.closing(sqlite3.connect(memory)) as db, contextlib.suppress(sqlite3.Error):
            poisoned = db.execute(
                "SELECT COUNT(*) FROM records WHERE prompt LIKE ?", (f"%{FORGED_MARK}%",)
            ).fetchone()[0]
    return int(settled_by_forgery + poisoned)


def journal_counts(path: Path) -> dict:
    """The emulator's own record of the run: every request it issued and how each was
    settled (the observer can miss messages while the broker is down; the journal
    cannot)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT code, COUNT(*) FROM requests GROUP BY code").fetchall()
    by_code = {code or "unsettled": n for code, n in rows}
    issued = sum(by_code.values())
    unsettled = by_code.get("unsettled", 0)
    # A request that expired or was cut by a shutdown got no decision: lost to the user.
    lost = unsettled + by_code.get("expired", 0) + by_code.get("shutdown", 0)
    return {
        "requests": issued,
        "settled": issued - unsettled,
        "lost": lost,
        "journal_outcomes": by_code,
    }


def chaos(
    requests: int,
    rate: float,
    *,
    directory: Path | None = None,
    broker: str = "auto",
    faults: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Run the loop for ``requests`` requests at ``rate`` per second under the schedule.

    Returns:
        The result object (see the module docstring).
    """
    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="lameta-chaos-")
        directory = Path(tmp.name)
    stack = Stack(directory)
    holder: dict = {}

    def start_observer(desc: dict) -> None:
        b = desc["broker"]
        url = BrokerUrl("mqtts", b["host"], b["port"], "observer", stack.password("observer"))
        client = MqttClient(
            url,
            "observer",
            client_id="chaos-observer",
            persistent_session=True,
            tls=TlsOptions(ca_certs=b["ca_file"]),
            reconnect_min_delay_s=0.2,
            reconnect_max_delay_s=1.0,
        )
        holder["observer"] = Observer(client, desc["network"]).start()

    config = StackConfig(
        directory=directory,
        broker=broker,  # type: ignore[arg-type]
        rate=rate,
        requests=requests,
        seed=seed,
        env={
            "sim": {
                "SIM_JOURNAL": str(stack.state_dir / "sim-journal.sqlite3"),
                "SIM_PENDING_TIMEOUT": "120",
            }
        },
    )
    try:
        desc = stack.up(config, progress=progress, on_broker=start_observer)
        observer: Observer = holder["observer"]
        run = ChaosRun(stack, desc, observer)
        topics = Topics.for_network(desc["network"])
        schedule = list(SCHEDULE) if faults else []
        next_forgery = 100
        deadline = time.monotonic() + requests / max(rate, 1e-9) * 2 + 300
        progress(f"driving {requests} requests at {rate:g}/s" + (" with faults" if faults else ""))
        while time.monotonic() < deadline:
            seen, settled = observer.counts()
            if schedule and seen >= schedule[0][0] * requests:
                _, fault = schedule.pop(0)
                progress(f"fault: {fault} at request {seen}")
                _inject(run, fault, topics)
            if faults and seen >= next_forgery:
                _forge(run, topics)
                next_forgery += 100
            if seen >= requests and settled >= seen and not schedule:
                break
            time.sleep(0.05)
        # Stragglers: the last outcomes are on their way.
        with contextlib.suppress(Exception):
            wait_for(lambda: observer.counts()[1] >= observer.counts()[0], 15, "the last outcomes")
        seen = observer.summary(run.windows)
        result = {"observer": {k: seen.pop(k) for k in ("requests", "settled", "lost")}, **seen}
        result.update(
            forged_sent=run.forged_sent,
            forged_accepted=_forged_accepted(run),
            faults=run.faults,
            rate=rate,
            requested=requests,
            seconds=round(time.monotonic() - run.t0, 1),
        )
        holder["observer"].stop()
        holder.pop("observer")
        stack.down(grace=20)
        result.update(journal_counts(stack.state_dir / "sim-journal.sqlite3"))
        return result
    finally:
        if "observer" in holder:
            holder["observer"].stop()
        with contextlib.suppress(Exception):
            stack.down(grace=20)
        if tmp is not None:
            tmp.cleanup()
