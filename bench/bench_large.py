"""SRL against beam search and the intent-conditioned proposer on large networks, at equal
information (the same predicted vector) and side by side in time.

For each network size: networks of seeds no training or model selection used (20,000 +
i; training draws from 1,000,000 up, checkpoint selection uses 900,001-900,016, the
evaluations 101-110) and request vectors drawn from a flat Dirichlet (not the dev
intents); ``--seed-base 900001`` runs on the training's validation networks instead, to
choose among variants without touching the bench's networks. The shipped policy's state is prepared once per network (routes, encoder,
tables: what the xApp does when a state arrives), and so is the proposer's profile
(:func:`xapp_composer.proposer.profile_state`). Then per request, each method decides on
that state:

- ``srl``: the policy on the whole graph (its own per-factor shortlist of 128);
- ``beam8``, ``beam32``: beam search over the predicted vector (:mod:`xapp_composer.beam`);
- ``srl_k<k>``: the proposer's top-k per position, then the policy on that reduced graph;
- ``srl_m<m>``, ``srl_k<k>_m<m>`` (``--starts``, ``--starts-k``): the same with
  multi-start decoding, the best of the policy's greedy rollouts from its m most likely
  first picks by Q*_s under the vector (:meth:`~xapp_composer.runtime.PolicyRuntime.compose`);
- ``topk_k<k>``: the proposer's top-k, then the exact optimum over it.

Each method starts from the prepared state's route rows (rows a method computes for one
request are dropped before the next method and request), so its latency is that of a
request on a freshly prepared state, whatever ran before. Every chain is scored by the
weighted subjective QoE under the request's vector (agentnet.chain.evaluate_chain, exact
routes); an infeasible chain scores -1. The full search grid is out of reach at these
sizes (2,000 agents already hold about 10^8 chains); up to ``--exact-max-agents``
(default 2,000) ``exact`` finds the optimum by branch and bound
(:func:`xapp_composer.proposer.exact_by_bound`; its latency is with the network's routes
already computed). ``best_known`` is the best chain any method found for the request:
the optimum where ``exact`` ran, else a lower bound of it.

Prints one JSON object on one line (also written, indented, to ``--out``); per-size
progress goes to stderr. The object holds, per size, each method's mean Q*_s,
its latency (p50, p90), its gap to ``best_known``, the score lost per k against no
reduction (``srl_k`` against ``srl``; ``topk_k`` against ``best_known``), whether SRL
beats beam search of width 8 at no more latency (mean Q*_s higher, p50 no higher), which
SRL variants do, and each SRL variant's paired difference to beam-8 over the requests.

    python bench/bench_large.py --agents 2000,10000,100000 --networks 2 --requests 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agentnet.chain import evaluate_chain
from agentnet.network import generate_network
from servicekit.logs import configure_logging
from xapp_composer.beam import beam_chain
from xapp_composer.proposer import (
    exact_by_bound,
    profile_state,
    reduced_prepared,
    topk_exhaustive,
)
from xapp_composer.routes import RouteTable
from xapp_composer.runtime import PolicyRuntime, Prepared

POLICY = Path(__file__).resolve().parents[1] / "models" / "policy" / "srl-general.onnx"
SEED_BASE = 20_000
APP, PROMPT = "qa", "a request"


def _ints(text: str) -> list[int]:
    return [int(a) for a in text.split(",") if a.strip()]


def methods(
    rt: PolicyRuntime,
    net,
    p: Prepared,
    profile,
    ks: list[int],
    exact: bool,
    starts: list[int] = (),
    starts_ks: list[int] = (),
) -> dict[str, Callable[[np.ndarray], tuple[int, ...] | None]]:
    """The deciders of one prepared state, by name; each maps a vector to a chain.
    ``starts`` are the multi-start variants' m, on the whole graph and on the proposer's
    top k for each k of ``starts_ks``."""

    def srl_starts(m):
        def run(v):
            return rt.compose(p, v, 0, APP, PROMPT, starts=m)

        return run

    def beam(width):
        def run(v):
            found = beam_chain(p.state, v, width)
            return found[0] if found else None

        return run

    def srl_reduced(k, m=1):
        def run(v):
            reduced = reduced_prepared(p, profile.propose(v, k))
            return rt.compose(reduced, v, 0, APP, PROMPT, starts=m)

        return run

    def topk(k):
        def run(v):
            found = topk_exhaustive(net, p.state, profile.propose(v, k), v)
            return found[0] if found else None

        return run

    def optimum(v):
        found = exact_by_bound(net, profile, v)
        return found[0] if found else None

    out = {"srl": srl_starts(1), "beam8": beam(8), "beam32": beam(32)}
    for k in ks:
        out[f"srl_k{k}"] = srl_reduced(k)
        out[f"topk_k{k}"] = topk(k)
    for m in starts:
        out[f"srl_m{m}"] = srl_starts(m)
        for k in starts_ks:
            out[f"srl_k{k}_m{m}"] = srl_reduced(k, m)
    if exact:
        out["exact"] = optimum
    return out


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of a - b over the requests, its standard error, and the requests a wins,
    ties (within 1e-9) and loses."""
    d = a - b
    return {
        "mean_diff": float(d.mean()),
        "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
        "wins": int((d > 1e-9).sum()),
        "ties": int((np.abs(d) <= 1e-9).sum()),
        "losses": int((d < -1e-9).sum()),
    }


def run_size(
    rt: PolicyRuntime,
    n: int,
    networks: int,
    requests: int,
    ks: list[int],
    rng,
    exact: bool,
    starts: list[int] = (),
    starts_ks: list[int] = (),
    seed_base: int = SEED_BASE,
) -> dict:
    """All methods on ``networks`` networks of ``n`` agents (seeds ``seed_base`` on),
    ``requests`` vectors each; with ``exact``, the exact optimum too; ``starts``,
    ``starts_ks``: :func:`methods`."""
    q: dict[str, list[float]] = {}
    ms: dict[str, list[float]] = {}
    prepare, profiling, propose = [], [], {k: [] for k in ks}
    for i in range(networks):
        net = generate_network(seed_base + i, n_agents=n)
        t = time.perf_counter()
        p = rt.prepare(net)
        prepare.append(time.perf_counter() - t)
        t = time.perf_counter()
        profile = profile_state(p.state)
        profiling.append(time.perf_counter() - t)
        table = p.state.route
        rows = OrderedDict(table.rows) if isinstance(table, RouteTable) else None
        deciders = methods(rt, net, p, profile, ks, exact, starts, starts_ks)
        rt.compose(p, np.full(4, 0.25), 0, APP, PROMPT)  # warm the sessions up
        for _ in range(requests):
            v = rng.dirichlet(np.ones(4))
            for k in ks:
                t = time.perf_counter()
                profile.propose(v, k)
                propose[k].append(time.perf_counter() - t)
            for name, decide in deciders.items():
                if rows is not None:
                    table.rows = OrderedDict(rows)  # the state as prepared
                t = time.perf_counter()
                chain = decide(v)
                ms.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
                score = -1.0 if chain is None else evaluate_chain(net, chain, v).Q_subjective
                q.setdefault(name, []).append(score)
        if rows is not None:
            table.rows = rows
    scores = {name: np.array(v) for name, v in q.items()}
    best = np.max(np.stack(list(scores.values())), axis=0)
    out: dict = {
        "agents": n,
        "networks": networks,
        "requests": len(best),
        "prepare_s": float(np.mean(prepare)),
        "profile_ms": float(np.mean(profiling) * 1e3),
        "best_known_q": float(best.mean()),
        "best_known_is_optimum": exact,
        "methods": {
            name: {
                "q": float(s.mean()),
                "gap_to_best_known": float((best - s).mean()),
                "infeasible": int((s <= -1.0).sum()),
                "p50_ms": float(np.median(ms[name])),
                "p90_ms": float(np.percentile(ms[name], 90)),
            }
            for name, s in scores.items()
        },
    }
    out["per_k"] = {
        str(k): {
            "propose_p50_ms": float(np.median(propose[k]) * 1e3),
            "srl_reduced_q": float(scores[f"srl_k{k}"].mean()),
            "srl_reduced_loss_vs_srl": float((scores["srl"] - scores[f"srl_k{k}"]).mean()),
            "srl_reduced_p50_ms": float(np.median(ms[f"srl_k{k}"])),
            "topk_exhaustive_q": float(scores[f"topk_k{k}"].mean()),
            "topk_exhaustive_loss_vs_best_known": float((best - scores[f"topk_k{k}"]).mean()),
            "topk_exhaustive_p50_ms": float(np.median(ms[f"topk_k{k}"])),
        }
        for k in ks
    }
    beam = out["methods"]["beam8"]

    def beats(name: str) -> bool:
        m = out["methods"][name]
        return m["q"] > beam["q"] and m["p50_ms"] <= beam["p50_ms"]

    out["srl_beats_beam8"] = beats("srl")
    out["srl_variants_beating_beam8"] = [
        name for name in out["methods"] if name.startswith("srl") and beats(name)
    ]
    out["srl_vs_beam8"] = {
        name: paired(s, scores["beam8"]) for name, s in scores.items() if name.startswith("srl")
    }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", default="2000,10000,100000", help="network sizes, comma list")
    ap.add_argument("--networks", type=int, default=2, help="networks per size")
    ap.add_argument("--requests", type=int, default=10, help="request vectors per network")
    ap.add_argument("--k", default="2,4,8,16,32", help="proposer sizes k, comma list")
    ap.add_argument(
        "--starts",
        default="",
        help="multi-start variants' m (srl_m<m>, srl_k<k>_m<m>), comma list; empty: none",
    )
    ap.add_argument(
        "--starts-k",
        default="8",
        help="proposer sizes k the multi-start variants also run on, comma list",
    )
    ap.add_argument(
        "--exact-max-agents",
        type=int,
        default=2000,
        help="also run the exact optimum (branch and bound) up to this size; 0: never",
    )
    ap.add_argument("--policy", type=Path, default=POLICY)
    ap.add_argument("--seed", type=int, default=0, help="seed of the request vectors")
    ap.add_argument(
        "--seed-base",
        type=int,
        default=SEED_BASE,
        help="first network seed (training's validation networks: 900001, to choose a "
        "variant without touching the bench's networks)",
    )
    ap.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = ap.parse_args(argv)
    if args.networks < 1 or args.requests < 1:
        ap.error("--networks and --requests must be at least 1")
    ks = _ints(args.k)
    if not ks or min(ks) < 1:
        ap.error("--k needs sizes of at least 1")
    starts, starts_ks = _ints(args.starts), _ints(args.starts_k)
    if starts and min(starts) < 2:
        ap.error("--starts needs m of at least 2 (m = 1 is srl)")
    if starts_ks and min(starts_ks) < 1:
        ap.error("--starts-k needs sizes of at least 1")
    configure_logging("WARNING")  # stdout carries the JSON object only
    rt = PolicyRuntime(args.policy, prefer_gpu=False)
    rng = np.random.default_rng(args.seed)
    result = {
        "command": "python bench/bench_large.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "policy": rt.version,
        "network_seeds": f"{args.seed_base}..{args.seed_base + args.networks - 1}",
        "sizes": [],
    }
    for n in _ints(args.agents):
        exact = n <= args.exact_max_agents
        result["sizes"].append(
            run_size(
                rt,
                n,
                args.networks,
                args.requests,
                ks,
                rng,
                exact,
                starts,
                starts_ks,
                args.seed_base,
            )
        )
        print(json.dumps(result["sizes"][-1]), file=sys.stderr, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result), flush=True)  # one line: bench/run_all.py reads the last one
    return result


if __name__ == "__main__":
    main()
