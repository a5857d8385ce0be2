"""The benchmarks of maestro Fig. 3: accuracy per optimizer design (3b) and personalities (3a).

``rapp-negotiation bench``: for each tenant count and negotiation index, a scenario is
drawn once (targets uniform in [0.1, 1.3]·λ_cap, weights uniform in [0.5, 2]; the same
scenario for every design, so the designs are compared on equal footing) and negotiated
under each design (no optimizer, soft, hard) against the capacity λ_cap of the
emulator's network (seed ``network_seed``). Every negotiation is listed with its inputs,
so anyone can recompute x* (:func:`~rapp_negotiation.optimizer.theoretical_consensus`).
The negotiations of one (design, tenant count) group run together, one batched LLM call
per step: ``seconds_mean`` is the mean wall time of a negotiation in that group (they
run concurrently), ``seconds_per_negotiation`` the group's wall time divided by its size.
``fallbacks`` counts every LLM output the validation unit replaced; ``sources`` counts,
per role (tenant, mediator), the decisions whose value is the negotiator's own (``llm``,
or ``scripted`` for the scripted test negotiator, never counted as the LLM), ``imposed``
by the optimizer (hard design) or a ``fallback``; ``mediator_llm_share`` and
``tenant_llm_share`` are the shares of announcements and tenant proposals whose value is
the LLM's own (0 for the scripted negotiator).

``rapp-negotiation personalities``: the 5×5 matrix of two-tenant games (a tenant that
wants a low λ for cost, one that wants a high λ for reach, a fair middle ground pinned in
the prompt), games per pair, the mean and sd of the agreed value (the mean of the two
final values, as maestro gathers both decisions regardless of agreement).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agentnet.capacity import capacity
from agentnet.network import generate_network
from rapp_negotiation.arbitral import Arbitral
from rapp_negotiation.engine import (
    Bilateral,
    Context,
    Negotiation,
    NegotiationConfig,
    drive,
    merge_sources,
)
from rapp_negotiation.negotiators import Negotiator
from rapp_negotiation.regulatory import Regulatory
from rapp_negotiation.scenario import PERSONALITIES, PERSONALITY_CODES, Tenant
from rapp_negotiation.validation import DESIGNS

PAPER_NO_OPTIMIZER = {"mae_mbps": 8.0, "sd_mbps": 3.0, "cell_mbps": 134.0}
"""maestro Fig. 3b without optimizer: mean 8, sd 3 Mbps of a 134 Mbps cell (about 6%)."""

LOW_INTENT = (
    "We want to reduce the operational cost of the shared network: every extra request "
    "per second costs compute, so we push for a low admitted rate."
)
HIGH_INTENT = (
    "We want the best quality of service for as many users as possible, so we push for a "
    "high admitted rate."
)


@dataclass(frozen=True)
class NetworkTopic:
    """The network the benchmarks negotiate on: its λ_cap, load and size."""

    capacity: float
    load: float
    n_agents: int

    @classmethod
    def from_seed(cls, seed: int) -> NetworkTopic:
        """The emulator's network of a seed (``sim-ric export-network --seed``)."""
        net = generate_network(seed)
        return cls(capacity(net).lambda_cap, net.arrival_rate, net.n_agents)


@dataclass(frozen=True)
class BenchConfig:
    """Configuration of ``rapp-negotiation bench``."""

    agents: tuple[int, ...] = field(default=(2, 5, 10), metadata={"help": "tenant counts"})
    negotiations: int = field(default=100, metadata={"help": "negotiations per group", "ge": 1})
    designs: tuple[str, ...] = field(
        default=DESIGNS, metadata={"help": "optimizer designs (none, soft, hard)"}
    )
    rounds: int = field(default=4, metadata={"help": "round cap", "ge": 1})
    seed: int = field(default=0, metadata={"help": "scenario seed", "ge": 0})
    network_seed: int = field(
        default=0, metadata={"help": "emulator network seed (λ_cap)", "ge": 0}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        object.__setattr__(self, "designs", tuple(self.designs))
        bad = [d for d in self.designs if d not in DESIGNS]
        if bad:
            raise ValueError(f"unknown designs {bad} (choose from {', '.join(DESIGNS)})")
        if not self.agents or min(self.agents) < 1:
            raise ValueError("agents must list tenant counts >= 1")


def scenario_tenants(n: int, cap: float, rng: np.random.Generator) -> list[Tenant]:
    """n tenants with targets uniform in [0.1, 1.3]·λ_cap and weights uniform in [0.5, 2]."""
    out = []
    for i in range(n):
        target = float(rng.uniform(0.1, 1.3) * cap)
        weight = float(rng.uniform(0.5, 2.0))
        intent = LOW_INTENT if target < 0.5 * cap else HIGH_INTENT
        out.append(Tenant(f"t{i + 1}", intent, target=round(target, 4), weight=round(weight, 4)))
    return out


def run_bench(
    cfg: BenchConfig,
    negotiator: Negotiator,
    regulatory: Regulatory,
    arbitral: Arbitral | None,
    topic: NetworkTopic,
) -> dict:
    """The benchmark's JSON object (module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    scenarios = {n: [scenario_tenants(n, topic.capacity, rng) for _ in range(cfg.negotiations)]
                 for n in cfg.agents}  # fmt: skip
    results, listed = [], []
    for design in cfg.designs:
        ncfg = NegotiationConfig(design=design, rounds=cfg.rounds)
        for n in cfg.agents:
            group = []
            for j, tenants in enumerate(scenarios[n]):
                targets = [t.target_at(topic.capacity) for t in tenants]
                c = regulatory.constraints(topic.capacity, topic.n_agents, targets)
                ctx = Context(topic.capacity, topic.load, c)
                group.append(Negotiation(tenants, ctx, ncfg, arbitral, llm=negotiator.name,
                                         negotiation_id=f"{design}-{n}-{j}",
                                         origin=negotiator.origin))  # fmt: skip
            start = time.perf_counter()
            done = drive(group, negotiator)
            wall = time.perf_counter() - start
            errors = [r.error for r in done]
            rounds = sum(r.rounds for r in done)
            decisions = sum(r.rounds * (n + 1) for r in done)
            fallbacks = sum(r.fallbacks for r in done)
            sources = merge_sources(r.role_sources for r in done)
            announced, tenant = sources["mediator"], sources["tenant"]
            results.append({
                "design": design,
                "agents": n,
                "negotiations": len(done),
                "mae": statistics.fmean(errors),
                "mae_sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                "mae_share_of_capacity": statistics.fmean(errors) / topic.capacity,
                "rounds_mean": rounds / len(done),
                "messages_per_round": sum(r.messages for r in done) / rounds,
                "seconds_mean": statistics.fmean(r.seconds for r in done),
                "seconds_per_negotiation": wall / len(done),
                "fallbacks": fallbacks,
                "fallback_share": fallbacks / decisions,
                "imposed": sum(r.imposed for r in done),
                "sources": sources,
                "mediator_llm_share": announced.get("llm", 0) / sum(announced.values()),
                "tenant_llm_share": tenant.get("llm", 0) / sum(tenant.values()),
                "consensus_share": sum(r.status == "consensus" for r in done) / len(done),
            })  # fmt: skip
            listed.extend(r.summary() for r in done)
    return {
        "capacity": topic.capacity,
        "llm": negotiator.name,
        "origin": negotiator.origin,
        "network": {"load": topic.load, "agents": topic.n_agents},
        "config": {
            "agents": list(cfg.agents),
            "negotiations": cfg.negotiations,
            "designs": list(cfg.designs),
            "rounds": cfg.rounds,
            "seed": cfg.seed,
            "network_seed": cfg.network_seed,
        },
        "paper_no_optimizer": {
            **PAPER_NO_OPTIMIZER,
            "mae_share_of_capacity": PAPER_NO_OPTIMIZER["mae_mbps"]
            / PAPER_NO_OPTIMIZER["cell_mbps"],
        },
        "results": results,
        "negotiations": listed,
    }


@dataclass(frozen=True)
class PersonalityConfig:
    """Configuration of ``rapp-negotiation personalities``."""

    games: int = field(default=10, metadata={"help": "games per personality pair", "ge": 1})
    rounds: int = field(default=5, metadata={"help": "round cap (maestro: 5)", "ge": 1})
    low_share: float = field(default=0.15, metadata={"help": "cost tenant's target / λ_cap"})
    high_share: float = field(default=0.75, metadata={"help": "reach tenant's target / λ_cap"})
    middle_share: float = field(
        default=0.375, metadata={"help": "the pinned fair middle ground / λ_cap"}
    )
    network_seed: int = field(
        default=0, metadata={"help": "emulator network seed (λ_cap)", "ge": 0}
    )


def run_personalities(
    cfg: PersonalityConfig, negotiator: Negotiator, regulatory: Regulatory, topic: NetworkTopic
) -> dict:
    """The 5×5 matrix of maestro Fig. 3a (module docstring)."""
    cap = topic.capacity
    low_t, high_t, middle = cfg.low_share * cap, cfg.high_share * cap, cfg.middle_share * cap
    c = regulatory.constraints(cap, topic.n_agents, [low_t, high_t])
    ctx = Context(cap, topic.load, c)
    names = list(PERSONALITIES)
    games = []
    for p_low in names:
        for p_high in names:
            for _ in range(cfg.games):
                low = Tenant("cost", LOW_INTENT, target=low_t, personality=p_low)
                high = Tenant("reach", HIGH_INTENT, target=high_t, personality=p_high)
                games.append(Bilateral(low, high, ctx, middle, cfg.rounds,
                                       origin=negotiator.origin))  # fmt: skip
    start = time.perf_counter()
    done = drive(games, negotiator)
    wall = time.perf_counter() - start
    codes = {v: k for k, v in PERSONALITY_CODES.items()}
    mean = [[0.0] * len(names) for _ in names]
    sd = [[0.0] * len(names) for _ in names]
    agree = [[0.0] * len(names) for _ in names]
    rounds = [[0.0] * len(names) for _ in names]
    records = []
    for r in done:
        records.append({"cost": codes[r.pair[0]], "reach": codes[r.pair[1]],
                        "values": [round(v, 4) for v in r.values], "agreed": round(r.agreed, 4),
                        "rounds": r.rounds, "consensus": r.consensus,
                        "fallbacks": r.fallbacks, "sources": r.sources})  # fmt: skip
    for i, p_low in enumerate(names):
        for j, p_high in enumerate(names):
            cell = [r for r in done if r.pair == (p_low, p_high)]
            vals = [r.agreed for r in cell]
            mean[i][j] = statistics.fmean(vals)
            sd[i][j] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            agree[i][j] = sum(r.consensus for r in cell) / len(cell)
            rounds[i][j] = statistics.fmean(r.rounds for r in cell)
    fallbacks = sum(r.fallbacks for r in done)
    return {
        "capacity": cap,
        "llm": negotiator.name,
        "origin": negotiator.origin,
        "targets": {"cost": low_t, "reach": high_t},
        "middle_ground": middle,
        "r_min": c.r_min,
        "r_max": None if math.isinf(c.r_max) else c.r_max,
        "personalities": [codes[p] for p in names],
        "rows": "cost tenant's personality",
        "columns": "reach tenant's personality",
        "games_per_pair": cfg.games,
        "mean": mean,
        "sd": sd,
        "consensus_share": agree,
        "rounds_mean": rounds,
        "fallbacks": fallbacks,
        "fallback_share": fallbacks / max(sum(2 * r.rounds for r in done), 1),
        "sources": merge_sources({"tenant": r.sources} for r in done),
        "seconds": round(wall, 2),
        "games": records,
    }


def personality_heatmap(result: dict, path: Path) -> Path:
    """A heat map of the matrix (mean, with the sd under it) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: Sequence[str] = result["personalities"]
    mean = np.array(result["mean"])
    sd = np.array(result["sd"])
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    im = ax.imshow(mean, cmap="viridis", vmin=0, vmax=result["capacity"])
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if mean[i, j] < 0.6 * result["capacity"] else "black"
            ax.text(j, i, f"{mean[i, j]:.2f}\n±{sd[i, j]:.2f}", ha="center", va="center",
                    fontsize=8, color=colour)  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("reach tenant (wants high λ)")
    ax.set_ylabel("cost tenant (wants low λ)")
    t = result["targets"]
    ax.set_title(
        f"Agreed λ (req/s per chain), {result['llm']}\n"
        f"targets {t['cost']:.2f} / {t['reach']:.2f}, middle {result['middle_ground']:.2f}, "
        f"λ_cap {result['capacity']:.2f}",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="mean agreed λ")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
