"""maestro Fig. 5 on the agentic network: a scripted timeline in the emulator.

The emulator core (:class:`~sim_ric.emulator.Emulator`) and the negotiation service
(:class:`~rapp_negotiation.service.NegotiationService`, with its units and LLM) run in
lockstep, one emulated second per tick, joined by an in-process bus that carries the same
protobuf payloads as MQTT: every tick's state goes to the service, every policy it
publishes goes to :meth:`~sim_ric.emulator.Emulator.apply_policy`. An xApp stand-in
serves the tick's requests (Poisson at the policy-scaled rate) with the exact optimum
chain for the even vector, or sees them refused while admission is suspended. Emulated
time stands still while a negotiation runs, so the figure does not depend on how fast
the LLM is.

The script follows maestro section V:

=====  ================================================================================
t (s)  event
=====  ================================================================================
0      full capacity; the tenants negotiate a consensus around half of λ_cap
200    an outage takes down the fastest agents of one service type (λ_cap falls to about
       40%); the tenants change their intents: one turns toxic and pushes to switch the
       service off, the others ask for most of what is left
300    the service is poor: every tenant asks to suspend admission (λ* = 0)
400    the agents recover (λ_cap restored); every tenant negotiates aggressively
=====  ================================================================================

Everything is logged as JSON lines (the service's negotiation logs, the emulator's
policy events and one ``timeline_tick`` line per tick, each with its tick ``t``), and the
figure is drawn from that log alone (:func:`plot`).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from agentnet.capacity import EVEN, capacity
from agentnet.intents import load_intents, project_intent_files
from agentnet.optimum import OptimumUnavailable, build_search_space, exact_optimum
from rapp_negotiation.service import IntentsSource, NegotiationService
from rapp_negotiation.settings import NegoSettings
from servicekit import codec
from sim_ric.dynamics import DynamicsConfig
from sim_ric.emulator import Emulator, EmulatorConfig

REPORT_DIR = Path(__file__).resolve().parent.parent / "models" / "negotiation" / "report"

PHASES: tuple[tuple[int, str, list[dict]], ...] = (
    (0, "normal operation", [
        {"name": "content", "intent": "Serve every creator who asks; reach matters most.",
         "target_share": 0.8, "personality": "normal"},
        {"name": "qa", "intent": "Answers within a second; a moderate load keeps queues short.",
         "target_share": 0.45, "personality": "normal"},
        {"name": "critical", "intent": "Hospital chains must not fail or stall.",
         "target_share": 0.25, "weight": 1.5, "personality": "agreeable"},
    ]),
    (200, "outage; one tenant turns toxic", [
        {"name": "content", "intent": "Service is degraded: switch it off to save our money.",
         "target": 0.0, "personality": "toxic"},
        {"name": "qa", "intent": "Keep the best quality of experience the network still gives.",
         "target_share": 0.8, "personality": "normal"},
        {"name": "critical", "intent": "Hospital chains must not fail or stall.",
         "target_share": 0.6, "weight": 1.5, "personality": "normal"},
    ]),
    (300, "every tenant asks to suspend admission", [
        {"name": "content", "intent": "The service is too poor to sell: suspend it.",
         "target": 0.0, "personality": "normal"},
        {"name": "qa", "intent": "Our users get failures: suspend admission until recovery.",
         "target": 0.0, "personality": "normal"},
        {"name": "critical", "intent": "Failed chains endanger patients: suspend admission.",
         "target": 0.0, "weight": 1.5, "personality": "normal"},
    ]),
    (400, "recovery; every tenant aggressive", [
        {"name": "content", "intent": "Win back every creator: we want a high admitted rate.",
         "target_share": 0.9, "personality": "toxic"},
        {"name": "qa", "intent": "Our users left during the outage; we want them all back.",
         "target_share": 0.7, "personality": "disagreeable"},
        {"name": "critical", "intent": "Hospitals need chains that never stall.",
         "target_share": 0.2, "weight": 1.5, "personality": "disagreeable"},
    ]),
)  # fmt: skip
"""(start tick, what happens, the tenants' business intents from then on)."""

OUTAGE = (200, 400)
"""Ticks [start, end) of the outage."""


@dataclass(frozen=True)
class TimelineConfig:
    """Configuration of ``lameta-studies nego-timeline``."""

    llm: str = field(default="local", metadata={"help": "local, openai or scripted",
                                                "choices": ("local", "openai", "scripted")})  # fmt: skip
    design: str = field(default="soft", metadata={"help": "none, soft or hard",
                                                  "choices": ("none", "soft", "hard")})  # fmt: skip
    seed: int = field(default=0, metadata={"help": "emulator seed", "ge": 0})
    ticks: int = field(default=500, metadata={"help": "emulated seconds", "ge": 1})
    rate: float = field(default=1.0, metadata={"help": "requests per tick at λ_0", "gt": 0})
    outage_share: float = field(
        default=0.4, metadata={"help": "λ_cap during the outage, as a share of the full one"}
    )
    out_dir: Path = field(default=REPORT_DIR, metadata={"help": "where the log and PNG go"})


class LoopbackClient:
    """The service's MQTT client replaced by an in-process bus (same payloads).

    Publishing on the policy topic hands the payload to ``on_policy``.
    """

    connected = True

    def __init__(self, on_policy: Callable[[bytes], str]):
        self.on_policy = on_policy
        self.published: list[tuple[str, bytes]] = []
        self.handlers: dict[str, Callable[[str, bytes], None]] = {}

    def subscribe(self, topic: str, handler, qos: int = 1) -> None:
        self.handlers[topic] = handler

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        if topic.endswith("/policy"):
            self.on_policy(payload)
        return True

    def deliver(self, topic: str, payload: bytes) -> None:
        self.handlers[topic](topic, payload)


def outage_agents(emu: Emulator, share: float) -> list[int]:
    """The fastest agents of the bottleneck's service type, taken down one by one until
    λ_cap falls to ``share`` of its full value."""
    net = emu.net.copy()
    full = capacity(net).lambda_cap
    best = None
    for t in net.cfg.chain_types:
        ids = [int(i) for i in np.flatnonzero(net.types == t)]
        ids.sort(key=lambda i: -net.mu[i])
        trial = net.copy()
        down = []
        for i in ids[:-1]:
            trial.available[i] = False
            down.append(i)
            if capacity(trial).lambda_cap <= share * full:
                break
        if best is None or len(down) < len(best):
            best = down
    return best or []


def xapp_serve(emu: Emulator, rng: np.random.Generator, rate: float) -> dict[str, Any]:
    """One tick of requests: refused while suspended, else served with the even vector's
    exact optimum chain (or rejected when no chain is feasible)."""
    n = int(rng.poisson(rate))
    counts = {"arrivals": n, "served": 0, "suspended": 0, "rejected": 0, "latency": []}
    chain = None
    if n and not emu.suspended:
        try:
            chain = exact_optimum(build_search_space(emu.net), EVEN, cfg=emu.net.cfg).chain
        except OptimumUnavailable:
            chain = None
    for _ in range(n):
        if emu.suspended:
            emu.refuse_suspended()
            counts["suspended"] += 1
            continue
        req = emu.new_request()
        d = codec.ControlDecision(request_id=req.request_id)
        if chain is None:
            d.rejection = "no feasible chain"
        else:
            d.chain.extend(chain)
        out = emu.handle_decision(d)
        if out.code == "served":
            counts["served"] += 1
            counts["latency"].append(out.L)
        else:
            counts["rejected"] += 1
    return counts


def run(cfg: TimelineConfig) -> dict:
    """Run the timeline; returns a summary (the log and the figure are written)."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{cfg.llm}-{cfg.design}"
    log_path = cfg.out_dir / f"timeline_{tag}.log.jsonl"
    intents_path = cfg.out_dir / f".timeline_{tag}_tenants.json"
    with log_path.open("w", encoding="utf-8") as fh:
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(10),
            logger_factory=structlog.PrintLoggerFactory(file=fh),
            cache_logger_on_first_use=False,
        )
        try:
            summary = _run(cfg, intents_path)
        finally:
            structlog.contextvars.clear_contextvars()
            intents_path.unlink(missing_ok=True)
            from servicekit.logs import configure_logging

            configure_logging("WARNING")
    png = plot(log_path, cfg.out_dir / f"timeline_{tag}.png")
    # Named relative to the report's directory (where the JSON is), so that a committed
    # report names the same files in any checkout.
    summary.update({"log": log_path.name, "png": png.name})
    (cfg.out_dir / f"timeline_{tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _run(cfg: TimelineConfig, intents_path: Path) -> dict:
    from rapp_negotiation.embedding import shared_minilm
    from rapp_negotiation.regulatory import Regulatory
    from rapp_negotiation.service import build_arbitral, build_negotiator

    log = structlog.get_logger("lameta_studies.negotiation_timeline")
    intents = load_intents(project_intent_files(), "train")
    emu = Emulator(intents, EmulatorConfig(network="fig5", seed=cfg.seed, run_id="fig5",
                                           dynamics=DynamicsConfig(crash_scale=0.0)))  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    down = outage_agents(emu, cfg.outage_share)
    phases = {start: (what, rows) for start, what, rows in PHASES}
    intents_path.write_text(json.dumps({"tenants": PHASES[0][2]}))
    settings = NegoSettings(network="fig5", llm=cfg.llm, design=cfg.design,
                            intents=intents_path, arbitral="classifier")  # fmt: skip
    negotiator = build_negotiator(settings)
    bus = LoopbackClient(emu.apply_policy)
    service = NegotiationService(
        settings, bus, negotiator, Regulatory(shared_minilm()),
        build_arbitral(settings, negotiator), IntentsSource(intents_path),
    )  # fmt: skip
    log.info("timeline_started", llm=negotiator.name, design=cfg.design, seed=cfg.seed,
             outage_agents=down, outage=list(OUTAGE))  # fmt: skip
    for t in range(cfg.ticks):
        structlog.contextvars.bind_contextvars(t=t)
        if t in phases:
            what, rows = phases[t]
            intents_path.write_text(json.dumps({"tenants": rows}))
            log.info("timeline_phase", what=what, tenants=[r["name"] for r in rows])
        outage = OUTAGE[0] <= t < OUTAGE[1]
        if t == OUTAGE[1]:
            emu.net.available[down] = True  # the agents recover
        state = emu.tick()
        if outage:
            # Held down for the whole outage (the dynamics would let them recover).
            emu.net.available[down] = False
            state = emu.state()
        bus.deliver(service.topics.state, codec.encode(state))
        service.step(0.0)
        p = emu.policy
        served = xapp_serve(
            emu, rng, cfg.rate * (1.0 if emu.suspended else emu.request_rate_scale())
        )
        log.info(
            "timeline_tick", load=state.arrival_rate,
            capacity=service.latest.capacity if service.latest else None,
            admitted=None if p is None else p.arrival_rate, suspended=emu.suspended,
            outage=outage, arrivals=served["arrivals"], served=served["served"],
            refused=served["suspended"], rejected=served["rejected"],
            latency=statistics.fmean(served["latency"]) if served["latency"] else None,
        )  # fmt: skip
    results = service.results
    return {
        "llm": negotiator.name,
        "design": cfg.design,
        "seed": cfg.seed,
        "ticks": cfg.ticks,
        "negotiations": [
            {
                "id": r.id,
                "status": r.status,
                "capacity": r.capacity,
                "targets": r.targets,
                "weights": r.weights,
                "r_min": r.r_min,
                "r_max": None if math.isinf(r.r_max) else r.r_max,
                "theoretical": r.theoretical,
                "agreed": r.agreed,
                "rounds": r.rounds,
                "fallbacks": r.fallbacks,
                "sources": r.role_sources,
                "warnings": r.warnings,
                "penalties": r.penalties,
            }
            for r in results
        ],
        "outcomes": dict(emu.outcomes),
        "policy_events": dict(emu.policy_events),
        "command": "lameta-studies nego-timeline " + " ".join(sys.argv[2:]),
    }


def read_log(path: Path) -> list[dict]:
    """The JSON lines of a run's log."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot(log_path: Path, png: Path) -> Path:
    """Draw the timeline from the run's log alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = read_log(log_path)
    ticks = [e for e in events if e.get("event") == "timeline_tick"]
    t = np.array([e["t"] for e in ticks])

    def series(key):
        return np.array([np.nan if e.get(key) is None else e[key] for e in ticks], dtype=float)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})  # fmt: skip
    top.plot(t, series("capacity"), color="black", lw=1.6, label="capacity λ_cap")
    top.step(t, series("admitted"), where="post", color="tab:blue", lw=2, label="consensus λ*")
    top.plot(t, series("load"), color="tab:orange", lw=1, alpha=0.8, label="λ in the state")
    start = [e for e in events if e.get("event") == "timeline_started"]
    if start:
        a, b = start[0]["outage"]
        top.axvspan(a, b, color="tab:red", alpha=0.08, label="outage")
    suspended = np.array([bool(e["suspended"]) for e in ticks])
    if suspended.any():
        top.fill_between(t, 0, 1, where=suspended, transform=top.get_xaxis_transform(),
                         color="grey", alpha=0.25, label="admission suspended")  # fmt: skip
    for e in events:
        if e.get("event") == "negotiation_started":
            top.axvline(e["t"], color="tab:blue", ls=":", lw=0.8)
            top.annotate(e["reason"].replace("_", " "), (e["t"], 0.97),
                         xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                         va="top", ha="right", color="tab:blue")  # fmt: skip
    # One label per negotiation: who was warned or penalised, and how often.
    actions: dict[int, dict[str, list[str]]] = {}
    final: dict[int, float] = {}
    for e in events:
        if e.get("event") == "negotiation_round":
            final[e["t"]] = e["announcement"]
            for sender, v in (e.get("verdicts") or {}).items():
                actions.setdefault(e["t"], {}).setdefault(sender, []).append(v["action"])
    for when, who in actions.items():
        text = "\n".join(
            f"{s}: " + ", ".join(f"{a} ×{acts.count(a)}" if acts.count(a) > 1 else a
                                 for a in dict.fromkeys(acts))
            for s, acts in who.items()
        )  # fmt: skip
        right = when > 0.6 * t.max()
        top.plot(when, final[when], "v", color="tab:red", ms=8)
        top.annotate(text, (when, final[when]), textcoords="offset points",
                     xytext=(-6 if right else 6, -8), ha="right" if right else "left",
                     va="top", fontsize=7, color="tab:red")  # fmt: skip
    top.set_xlim(-0.03 * t.max(), 1.02 * t.max())
    top.set_ylabel("requests/s per chain")
    header = [e for e in events if e.get("event") == "timeline_started"]
    llm = header[0]["llm"] if header else ""
    top.set_title(f"Negotiated admission rate over time (maestro Fig. 5), {llm}", fontsize=10)
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.02, 0.86), ncol=2)
    lat = series("latency")
    bottom.plot(t, lat, ".", ms=3, color="tab:green", label="mean latency of served chains (s)")
    bottom.set_ylabel("latency (s)")
    ax2 = bottom.twinx()
    ax2.plot(t, np.cumsum(series("refused")), color="grey", label="requests refused (suspended)")
    ax2.plot(t, np.cumsum(series("rejected")), color="tab:red", lw=1,
             label="requests without a feasible chain")  # fmt: skip
    ax2.set_ylabel("cumulative requests")
    lines = bottom.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    bottom.set_xlabel("time (emulated s)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
