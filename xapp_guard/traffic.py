"""A model of the recorded stack that realises a :class:`Scenario` as sensor events.

Why a model and not the real stack: the self-evolution loop realises hundreds of
scenarios per generation, and a real realisation costs its own duration in wall time
on two shared cores, with the rApp (20 s to load) and the xApp competing for them. The
model produces the same :class:`~xapp_guard.events.Event` stream the sensor writes, so
the windows come out of the very featurizer the service runs; what it knows of the stack
is measured on the real recording (:class:`Calibration`) or is the stack's own logic:

- the emulator publishes requests (Poisson at a recorded rate, recorded sizes) and the
  retained state every second, and answers every decision with an outcome whose code
  follows ``sim_ric``'s rules (served once for a pending request; ``duplicate``,
  ``unknown_request``, ``garbage``, ``wrong_step_type`` otherwise);
- the xApp decides requests first in, first out (recorded latency when idle, recorded
  throughput when busy; a request id it already decided is only acknowledged), calls
  Translate before each decision and ReportOutcome after each served outcome of its own
  decisions (also a forged one), and checks the rApp's health periodically; while it is
  down its persistent session keeps the requests, decided in a burst when it returns;
- the broker delivers every publish to every connected subscriber of the topic;
- the attacker does what :mod:`xapp_guard.attacks` does, payload sizes from the codec.

:func:`compare` measures how far the model's windows are from the recorded ones for the
recorded episodes' own parameters.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lameta_proto.v1 import intent_pb2
from servicekit import codec
from servicekit.mqtt import Topics
from xapp_guard.corpus import Corpus
from xapp_guard.events import Event, grpc_client, topic_kind
from xapp_guard.features import Window, windows_of
from xapp_guard.scenarios import CLASSES, Scenario, schedule

TRANSLATE = "/lameta.v1.IntentService/Translate"
REPORT = "/lameta.v1.IntentService/ReportOutcome"
CHECK = "/grpc.health.v1.Health/Check"
MAX_PROMPT_BYTES = 4096
"""The rApp refuses longer prompts (INVALID_ARGUMENT), the xApp then falls back."""


def _percentiles(v: list[float] | np.ndarray, n: int = 21) -> list[float]:
    v = np.asarray(v, float)
    if len(v) == 0:
        return [0.0]
    return [round(float(x), 5) for x in np.percentile(v, np.linspace(0, 100, n))]


@dataclass
class Calibration:
    """What the model takes from a real recording: sizes, delays, rates (quantiles)."""

    request_bytes: list[float]
    decision_bytes: list[float]
    served_bytes: list[float]
    state_bytes: float
    translate_bytes: list[float]
    report_bytes: list[float]
    check_bytes: float
    health_period_s: float
    decide_s: list[float]
    """Request to decision when the xApp is idle (s)."""
    service_s: float
    """Time per decision when the xApp has a backlog (s): 1 / its busiest second."""
    outcome_s: list[float]
    relay_s: list[float]
    rates: list[float]
    """Request rates the emulator ran at (req/s)."""
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        return cls(**d)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def measure(cls, corpus: Corpus, events: list[Event], part: str = "train") -> Calibration:
        """Measure on the benign traffic of one part of a recording."""
        labels = corpus.labels
        span = next(p for p in labels["parts"] if p["name"] == part)
        attackers = {e["client"] for e in labels["episodes"]}
        # Traffic a few seconds after an attack or a restart still carries its wake.
        busy = [(e["t_start"] - 1, e["t_end"] + 3) for e in labels["episodes"]]
        busy += [(b["t_start"] - 1, b["t_end"] + 15) for b in labels["benign_events"]]
        start = labels.get("t_ready", span["t_start"])

        def quiet(t: float) -> bool:
            return start <= t <= span["t_end"] and not any(a <= t <= b for a, b in busy)

        xapp = ""
        first: dict[tuple[str, str], Event] = {}
        sizes: dict[str, list[float]] = defaultdict(list)
        checks: list[float] = []
        for ev in events:
            if ev.client in attackers or not quiet(ev.t):
                continue
            kind = topic_kind(ev.topic, labels["network"])
            method = ev.topic.rsplit("/", 1)[-1]
            if ev.kind == "publish":
                if kind == "requests":
                    sizes["request"].append(ev.size)
                elif kind == "control":
                    xapp = ev.client
                    sizes["decision"].append(ev.size)
                elif kind == "outcomes" and ev.code == "served":
                    sizes["served"].append(ev.size)
                elif kind == "state":
                    sizes["state"].append(ev.size)
                key = (kind + (ev.code or ""), ev.rid)
            elif ev.kind == "rpc":
                if method == "Check":
                    checks.append(ev.t)
                    sizes["check"].append(ev.size)
                sizes[method].append(ev.size)
                key = (method, ev.rid)
            else:
                continue
            if ev.rid:
                first.setdefault(key, ev)
        delays: dict[str, list[float]] = defaultdict(list)
        for (what, rid), ev in first.items():
            if what != "requests":
                continue
            dec = first.get(("control", rid))
            out = first.get(("outcomesserved", rid))
            rep = first.get(("ReportOutcome", rid))
            if dec is not None:
                delays["decide"].append(max(0.0, dec.t - ev.t))
                if out is not None:
                    delays["outcome"].append(max(0.0, out.t - dec.t))
                    if rep is not None:
                        delays["relay"].append(max(0.0, rep.t - out.t))
        per_window: dict[int, int] = defaultdict(int)
        for ev in events:
            if (
                ev.kind == "publish"
                and ev.client == xapp
                and topic_kind(ev.topic, labels["network"]) == "control"
            ):
                per_window[math.floor(ev.t)] += 1
        busiest = max(per_window.values(), default=20)
        rates = [labels["config"]["rate"]] + [
            b["value"] for b in labels["benign_events"] if b["kind"] == "sim_restart"
        ]
        gaps = np.diff(checks)
        return cls(
            request_bytes=_percentiles(sizes["request"]),
            decision_bytes=_percentiles(sizes["decision"]),
            served_bytes=_percentiles(sizes["served"]),
            state_bytes=float(np.median(sizes["state"] or [0.0])),
            translate_bytes=_percentiles(sizes["Translate"]),
            report_bytes=_percentiles(sizes["ReportOutcome"]),
            check_bytes=float(np.median(sizes["check"] or [0.0])),
            health_period_s=float(np.median(gaps[gaps > 0.5])) if (gaps > 0.5).any() else 2.0,
            decide_s=_percentiles(delays["decide"]),
            service_s=1.0 / busiest,
            outcome_s=_percentiles(delays["outcome"]),
            relay_s=_percentiles(delays["relay"]),
            rates=sorted(set(rates)),
            source=f"seed {labels['seed']}, part {part}: {len(delays['decide'])} requests",
        )


def _draw(q: list[float], rng: np.random.Generator) -> float:
    """A sample of a distribution given by equally spaced quantiles (linear between)."""
    u = rng.random() * (len(q) - 1)
    i = min(int(u), len(q) - 2) if len(q) > 1 else 0
    if len(q) == 1:
        return q[0]
    return q[i] + (u - i) * (q[i + 1] - q[i])


@dataclass
class Realisation:
    """The events of one realised scenario and who is what in them."""

    events: list[Event]
    attacker: set[str]
    span: tuple[float, float]
    """The scenario's own time span (attack or legitimate burst)."""
    benign_clients: set[str] = field(default_factory=set)


@dataclass
class _Pending:
    t: float
    rid: str
    deadline: float


class StackModel:
    """Realises scenarios (see the module docstring).

    Args:
        cal: the calibration.
        network: the network name in the topics.
        pre_s: benign traffic before the scenario starts (gives the sequences context).
        post_s: traffic after it ends.
    """

    def __init__(self, cal: Calibration, network: str = "default", pre_s: float = 10.0,
                 post_s: float = 3.0):  # fmt: skip
        self.cal = cal
        self.network = network
        self.topics = Topics.for_network(network)
        self.pre_s, self.post_s = pre_s, post_s

    # ---- public -----------------------------------------------------------------------
    def realise(self, s: Scenario, seed: int) -> Realisation:
        """The events of scenario ``s`` with its surroundings, randomness from ``seed``."""
        return _Run(self, s, np.random.default_rng(seed)).run()

    def windows(self, s: Scenario, seed: int) -> tuple[list[Window], np.ndarray, np.ndarray]:
        """(windows, labels, in_span) of a realisation: the attacker's active windows get
        the class, its passive ones -1, everyone else's 0; ``in_span`` marks windows
        within the scenario's span (plus the sequence's reach after it)."""
        r = self.realise(s, seed)
        ws = windows_of(r.events, self.network)
        y = np.zeros(len(ws), np.int64)
        in_span = np.zeros(len(ws), bool)
        cls = CLASSES.index(s.cls)
        for i, w in enumerate(ws):
            if r.span[0] - 1 <= w.w <= r.span[1] + 1.5:
                in_span[i] = True
            if w.client in r.attacker:
                y[i] = cls if w.active else -1
        return ws, y, in_span


class _Run:
    """One realisation (state of the simulated stack)."""

    def __init__(self, model: StackModel, s: Scenario, rng: np.random.Generator):
        self.m, self.s, self.rng = model, s, rng
        self.cal = model.cal
        self.t0 = 1_000_000.0 + float(rng.integers(0, 1_000_000))
        self.ev: list[Event] = []
        self.n = 0
        self.sim, self.xapp, self.observer = (
            "sim-ric-default",
            "xapp-composer-default",
            "lameta-observer",
        )
        self.xapp_grpc = self._grpc_name()
        # client -> list of (from, to, topic kinds) it is subscribed during
        self.subs: dict[str, list[tuple[float, float, tuple[str, ...]]]] = defaultdict(list)
        self.settled: dict[str, str] = {}
        self.pending: dict[str, float] = {}  # rid -> deadline
        self.xapp_decided: set[str] = set()
        self.requests: list[tuple[float, str, int, bool]] = []  # (t, rid, size, valid)
        self._decisions: list[tuple[float, str, str, str]] = []  # (t, client, rid, how)
        self._served: list[tuple[float, str]] = []  # served outcomes (t, rid), real or forged
        self._grpc_switch: tuple[float, str] | None = None  # (restart, the old channel)

    def _grpc_name(self) -> str:
        return grpc_client(f"ipv4:127.0.0.1:{int(self.rng.integers(32768, 61000))}")

    def _rid(self) -> str:
        self.n += 1
        return f"{self.rng.bytes(3).hex()}-{self.n:06d}"

    def _emit(self, t: float, kind: str, client: str, topic: str = "", size: int = 0,
              code: str = "", rid: str = "", decoded: str = "") -> None:  # fmt: skip
        self.ev.append(Event(t, kind, client, topic, int(size), code, rid, decoded))

    def _publish(self, t: float, client: str, kind: str, size: float, rid: str = "",
                 code: str = "", decoded: str = "ok") -> None:  # fmt: skip
        topic = getattr(self.m.topics, kind) if kind in ("requests", "control", "outcomes",
                                                         "state") else kind  # fmt: skip
        self._emit(t, "publish", client, topic, int(size), code, rid,
                   decoded if kind in ("requests", "control", "outcomes") else "")  # fmt: skip

    # ---- the run --------------------------------------------------------------------
    def run(self) -> Realisation:
        s, m = self.s, self.m
        duration = float(s.params["duration_s"])
        a = self.t0 + m.pre_s
        b = a + duration
        end = b + m.post_s
        rate = float(self.rng.choice(self.cal.rates))
        xapp_down: tuple[float, float] | None = None
        if s.cls == "benign":
            kind = s.params["kind"]
            if kind == "xapp_restart":
                xapp_down = (a, a + float(s.params["outage_s"]))
                end = max(end, xapp_down[1] + m.post_s + 2)
            elif kind == "rate_change":
                rate_b = rate * float(s.params["rate_factor"])
        # Subscriptions of the benign services over the whole run.
        self.subs[self.xapp].append((-math.inf, math.inf, ("requests", "outcomes", "state")))
        self.subs[self.sim].append((-math.inf, math.inf, ("control",)))
        self.subs[self.observer].append((-math.inf, math.inf, ("control", "outcomes")))
        if xapp_down is not None:
            self.subs[self.xapp] = [(-math.inf, xapp_down[0], ("requests", "outcomes", "state")),
                                    (xapp_down[1], math.inf, ("requests", "outcomes", "state"))]  # fmt: skip
        # The emulator's requests and state.
        sim_gap: tuple[float, float] | None = None
        if s.cls == "benign" and s.params["kind"] == "rate_change":
            sim_gap = (a, a + 1.0)
        t = self.t0
        while True:
            r = rate if sim_gap is None or t < sim_gap[0] else rate_b
            t += float(self.rng.exponential(1.0 / r))
            if t >= end:
                break
            if sim_gap is not None and sim_gap[0] <= t < sim_gap[1]:
                continue
            rid = self._rid()
            size = _draw(self.cal.request_bytes, self.rng)
            self.requests.append((t, rid, int(size), True))
            self.pending[rid] = t + 30.0
            self._publish(t, self.sim, "requests", size, rid)
        phase = float(self.rng.random())
        for k in range(int(end - self.t0) + 1):
            ts = self.t0 + phase + k
            if ts < end and not (sim_gap and sim_gap[0] <= ts < sim_gap[1]):
                self._publish(ts, self.sim, "state", self.cal.state_bytes, decoded="")
        if sim_gap is not None:
            self._restart(self.sim, sim_gap[0], sim_gap[1], status="sim-ric")
        if s.cls == "benign" and s.params["kind"] == "observer":
            self._dashboard(a, b)
        attacker: set[str] = set()
        if s.cls != "benign":
            attacker = self._attack(a, b)
        self._xapp(xapp_down, end)
        self._outcomes()
        self._relay()
        self._health(end, xapp_down)
        self._deliveries()
        self.ev.sort(key=lambda e: e.t)
        # The sensor reads its sources every few ms: stamps carry that jitter, and stay in
        # the order the broker logged the events (a decision before its outcome).
        jittered, last = [], -math.inf
        for e in self.ev:
            last = max(last, e.t + float(self.rng.uniform(0, 0.02)))
            jittered.append(Event(last, e.kind, e.client, e.topic, e.size, e.code, e.rid,
                                  e.decoded))  # fmt: skip
        span = (math.floor(a), math.floor(xapp_down[1] + 2 if xapp_down else b))
        benign = {self.sim, self.xapp, self.observer, self.xapp_grpc}
        return Realisation(jittered, attacker, span, benign)

    # ---- benign processes -------------------------------------------------------------
    def _restart(self, client: str, down: float, up: float, status: str) -> None:
        self._publish(down, client, f"lameta/v1/status/{status}", 7, decoded="")
        self._emit(down + 0.01, "disconnect", client, code="clean")
        self._emit(up, "connect", client)
        self._emit(up + 0.002, "subscribe", client)
        self._publish(up + 0.003, client, f"lameta/v1/status/{status}", 6, decoded="")

    def _dashboard(self, a: float, b: float) -> None:
        name = f"lameta-dashboard-{int(self.rng.integers(100, 999))}"
        self._emit(a, "connect", name)
        self._emit(a + 0.002, "subscribe", name)
        self._publish(a + 0.003, name, f"lameta/v1/status/{name}", 6, decoded="")
        self.subs[name].append((a, b, ("requests", "control", "outcomes", "state")))
        self._publish(b, name, f"lameta/v1/status/{name}", 7, decoded="")
        self._emit(b + 0.01, "disconnect", name, code="clean")

    def _xapp(self, down: tuple[float, float] | None, end: float) -> None:
        """Decisions for every request the xApp receives, first in, first out."""
        cal, rng = self.cal, self.rng
        busy_until = -math.inf
        if down is not None:
            self._restart(self.xapp, down[0], down[1], status="xapp-composer")
            old = self.xapp_grpc
            self.xapp_grpc = self._grpc_name()
            self._grpc_switch = (down[1], old)
        for t, rid, size, valid in sorted(self.requests):
            if not valid:
                continue
            arrive = t
            if down is not None and down[0] <= t < down[1] + 0.3:
                arrive = down[1] + 0.3  # the persistent session delivers them on return
            if rid in self.xapp_decided:
                continue  # a redelivered or replayed request: acknowledged only
            done = max(arrive + _draw(cal.decide_s, rng), busy_until + cal.service_s)
            if done >= end:
                break
            busy_until = done
            grpc_now = self._xapp_grpc_at(done)
            prompt = max(0, size - 60)
            code = "OK" if prompt <= MAX_PROMPT_BYTES else "INVALID_ARGUMENT"
            tr_size = _draw(cal.translate_bytes, rng) if size <= 400 else prompt + 20
            self._emit(max(arrive, done - 0.003), "rpc", grpc_now, TRANSLATE, tr_size, code, rid)
            self._publish(done, self.xapp, "control", _draw(cal.decision_bytes, rng), rid)
            self.xapp_decided.add(rid)
            self._decisions.append((done, self.xapp, rid, "valid"))

    def _xapp_grpc_at(self, t: float) -> str:
        if self._grpc_switch is not None and t < self._grpc_switch[0]:
            return self._grpc_switch[1]
        return self.xapp_grpc

    def _outcomes(self) -> None:
        """The emulator's answer to every decision (sim_ric's rules)."""
        rng = self.rng
        for t, client, rid, how in sorted(self._decisions):
            delay = _draw(self.cal.outcome_s, rng)
            if how == "garbage":
                self._publish(t + delay, self.sim, "outcomes", 233, "", "garbage")
                continue
            if rid in self.settled:
                code = "duplicate"
            elif rid not in self.pending:
                code = "unknown_request"
            elif how == "random_chain" and rng.random() < 0.97:
                code = "wrong_step_type"
            else:
                code = "served"
            if code == "served":
                self.settled[rid] = client
                self.pending.pop(rid, None)
                size = _draw(self.cal.served_bytes, rng)
            else:
                size = len(codec.encode(codec.Outcome(
                    request_id=rid, accepted=False, code=code, timestamp_ns=1,
                    reason=f"{code.replace('_', ' ')}: request {rid!r}")))  # fmt: skip
            self._publish(t + delay, self.sim, "outcomes", size, rid, code)
            if code == "served":
                self._served.append((t + delay, rid))

    def _relay(self) -> None:
        """ReportOutcome for each served outcome (real or forged) of the xApp's own decisions."""
        for t, rid in sorted(self._served):
            if rid in self.xapp_decided:
                at = t + _draw(self.cal.relay_s, self.rng)
                self._emit(at, "rpc", self._xapp_grpc_at(at), REPORT,
                           _draw(self.cal.report_bytes, self.rng), "OK", rid)  # fmt: skip

    def _health(self, end: float, down: tuple[float, float] | None) -> None:
        t = self.t0 + float(self.rng.uniform(0, self.cal.health_period_s))
        while t < end:
            if down is None or not down[0] <= t < down[1]:
                self._emit(t, "rpc", self._xapp_grpc_at(t), CHECK, self.cal.check_bytes, "OK")
            t += self.cal.health_period_s

    def _deliveries(self) -> None:
        pubs = [e for e in self.ev if e.kind == "publish"]
        for e in pubs:
            kind = topic_kind(e.topic, self.m.network)
            if kind not in ("requests", "control", "outcomes", "state"):
                continue
            for client, spans in self.subs.items():
                if any(lo <= e.t < hi and kind in kinds for lo, hi, kinds in spans):
                    self._emit(e.t + 0.001, "deliver", client, e.topic, e.size)

    # ---- the attacker ---------------------------------------------------------------
    def _attack(self, a: float, b: float) -> set[str]:
        s, rng, p = self.s, self.rng, self.s.params
        times = a + schedule(s, rng)
        name = f"atk-{int(rng.integers(1000, 9999))}"
        if s.cls == "memory_poisoning":
            return self._poison(times, p)
        if s.cls == "reconnect_storm":
            for t in times:
                self._emit(t, "connect", name)
                if p["subscribe"] == "yes":
                    self._emit(t + 0.002, "subscribe", name)
                    self.subs[name].append((t, t + 0.005, ("requests",)))
                clean = p["clean"] == "yes"
                self._emit(t + 0.005, "disconnect", name, code="clean" if clean else "closed")
            return {name}
        self._emit(a - 0.05, "connect", name)
        kinds: tuple[str, ...] = ()
        if s.cls != "oversize":
            kinds = ("requests", "control") if s.cls in ("replay", "forged_outcome") else (
                "requests",)  # fmt: skip
            self._emit(a - 0.048, "subscribe", name)
            if len(kinds) > 1:
                self._emit(a - 0.047, "subscribe", name)
        self.subs[name].append((a - 0.04, b + 0.05, kinds))
        self._emit(b + 0.05, "disconnect", name, code="clean")
        used: set[str] = set()
        for t in times:
            getattr(self, f"_{s.cls}")(t, name, p, used, a)
        return {name}

    def _seen_requests(self, since: float, t: float) -> list[tuple[float, str, int, bool]]:
        return [r for r in self.requests if since <= r[0] < t and r[3]]

    def _forged_decision(self, t, name, p, used, a) -> None:
        rid = None
        if p["target"] == "pending":
            seen = self._seen_requests(a, t)
            fresh = [r for r in seen if r[1] not in used]
            pick = (
                fresh[-1] if fresh else (seen[int(self.rng.integers(len(seen)))] if seen else None)
            )
            if pick is not None:
                rid = pick[1]
                used.add(rid)
        rid = rid or self._rid()
        n = 3 if p["valid_chain"] == "yes" else int(self.rng.integers(1, 8))
        size = len(codec.encode(codec.ControlDecision(
            request_id=rid, chain=[40] * n, elam="minilm", predicted=[0.25] * 4,
            policy_version="srl-general", timestamp_ns=1 << 60)))  # fmt: skip
        self._publish(t, name, "control", size, rid)
        self._decisions.append((t, name, rid, "random_chain"))

    def _forged_outcome(self, t, name, p, used, a) -> None:
        rid = None
        if p["target"] == "decided":
            seen = [d for d in self._xapp_decisions_before(t) if d[0] >= a and d[2] not in used]
            if seen:
                rid = seen[-1][2]
                used.add(rid)
        rid = rid or self._rid()
        self._publish(
            t, name, "outcomes", _draw(self.cal.served_bytes, self.rng) + 30, rid, "served"
        )
        self._served.append((t, rid))

    def _xapp_decisions_before(self, t: float) -> list[tuple[float, str, str, str]]:
        # The xApp's decisions are made after the attacker's actions are laid down, so
        # approximate them by the requests (the xApp decides within milliseconds).
        return [(r[0], self.xapp, r[1], "valid") for r in self.requests if r[0] < t - 0.05 and r[3]]

    def _replay(self, t, name, p, used, a) -> None:
        seen = self._seen_requests(a, t)
        if not seen:
            return
        old = [r for r in seen if r[0] <= t - float(p["delay_s"])] or seen[:1]
        pick = old[int(self.rng.integers(len(old)))]
        if p["what"] == "requests":
            self._publish(t, name, "requests", pick[2], pick[1])
            self.requests.append((t, pick[1], pick[2], True))
        else:
            self._publish(t, name, "control", _draw(self.cal.decision_bytes, self.rng), pick[1])
            self._decisions.append((t, name, pick[1], "replayed"))

    def _request_flood(self, t, name, p, used, a) -> None:
        rid = self._rid()
        size = len(codec.encode(codec.ServiceRequest(
            request_id=rid, prompt="x" * int(p["prompt_bytes"]), app="immersive",
            chain_types=[1, 2, 3], arrival_rate=1.0, timestamp_ns=1 << 60)))  # fmt: skip
        self._publish(t, name, "requests", size, rid)
        self.requests.append((t, rid, size, True))

    def _oversize(self, t, name, p, used, a) -> None:
        size, kind = int(p["size_bytes"]), p["topic"]
        rid = self._rid()
        if p["garbage"] == "yes":
            self._publish(t, name, kind, size, "", decoded="garbage")
            if kind == "control":
                self._decisions.append((t, name, "", "garbage"))
            return
        self._publish(t, name, kind, size + 40, rid)
        if kind == "requests":
            self.requests.append((t, rid, size + 40, True))
        elif kind == "control":
            self._decisions.append((t, name, rid, "valid"))
        else:
            self._served.append((t, rid))

    def _poison(self, times: np.ndarray, p: dict[str, Any]) -> set[str]:
        name = self._grpc_name()
        reused = [self._rid() for _ in range(3)]
        for t in times:
            rid = {"empty": "", "random": self._rid(),
                   "replayed": reused[int(self.rng.integers(3))]}[p["rid"]]  # fmt: skip
            size = intent_pb2.ReportOutcomeRequest(
                prompt="x" * int(p["prompt_bytes"]), preference=[0.25] * 4, reward=7.5,
                app="immersive", request_id=rid).ByteSize()  # fmt: skip
            self._emit(t, "rpc", name, REPORT, size, "OK", rid)
        return {name}


def compare(corpus: Corpus, model: StackModel, part: str = "train", seeds: int = 3) -> dict:
    """How far the model's attacker windows are from the recorded ones, per class.

    Each recorded episode of ``part`` is realised by the model with its own parameters
    (``seeds`` times). Per class: the standardised mean difference (SMD) of every feature's
    ``log1p`` between recorded and modelled active attacker windows, summarised as the
    median |SMD| over the features either side uses, and the three largest.
    """
    from xapp_guard.features import NAMES
    from xapp_guard.scenarios import validate

    real: dict[str, list[np.ndarray]] = defaultdict(list)
    synth: dict[str, list[np.ndarray]] = defaultdict(list)
    for i, ep in enumerate(corpus.labels["episodes"]):
        if ep["part"] != part:
            continue
        mask = corpus.episode == i
        real[ep["class"]] += [w.x for w, m in zip(corpus.windows, mask, strict=True) if m]
        s = validate({"class": ep["class"], "variant": ep["variant"], **ep["params"]})
        for k in range(seeds):
            ws, y, _ = model.windows(s, 7919 * i + k)
            synth[ep["class"]] += [w.x for w, label in zip(ws, y, strict=True) if label > 0]
    out = {}
    for cls in sorted(real):
        a = np.log1p(np.stack(real[cls]))
        b = np.log1p(np.stack(synth[cls])) if synth[cls] else np.zeros((0, a.shape[1]))
        if not len(b):
            out[cls] = {"real_windows": len(a), "model_windows": 0}
            continue
        used = (a.any(0)) | (b.any(0))
        sd = np.sqrt((a.var(0) + b.var(0)) / 2)
        smd = np.where(sd > 1e-9, (b.mean(0) - a.mean(0)) / np.maximum(sd, 1e-9), 0.0)
        order = np.argsort(-np.abs(smd))
        out[cls] = {
            "real_windows": len(a), "model_windows": len(b),
            "median_abs_smd": round(float(np.median(np.abs(smd[used]))), 3),
            "largest": {NAMES[j]: round(float(smd[j]), 2) for j in order[:3]},
        }  # fmt: skip
    return out
