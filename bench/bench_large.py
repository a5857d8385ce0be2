"""SRL against beam search on large networks, at equal information (the same vector).

For each network size, seeded networks no training used (seeds 20,000 + i) and intent
vectors drawn from a flat Dirichlet (not the dev intents), the shipped policy composes a
chain (state prepared once per network, as the xApp does) and beam search of widths 8 and
32 (:mod:`xapp_composer.beam`) searches over the same vector; each chain is scored by
the weighted subjective QoE under that vector (agentnet.chain.evaluate_chain). Prints
one JSON line per size: mean Q*_s and p50 latency per method.

    python bench/bench_large.py --agents 2000,10000 --networks 2 --intents 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agentnet.chain import evaluate_chain
from agentnet.network import generate_network
from xapp_composer.beam import beam_chain
from xapp_composer.runtime import PolicyRuntime

POLICY = Path(__file__).resolve().parents[1] / "models" / "policy" / "srl-general.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", default="2000,10000")
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--intents", type=int, default=10)
    ap.add_argument("--policy", type=Path, default=POLICY)
    args = ap.parse_args()
    rt = PolicyRuntime(args.policy, prefer_gpu=False)
    rng = np.random.default_rng(0)
    for n in (int(a) for a in args.agents.split(",")):
        scores: dict[str, list[float]] = {"srl": [], "beam8": [], "beam32": []}
        times: dict[str, list[float]] = {k: [] for k in scores}
        prep = []
        for i in range(args.networks):
            net = generate_network(20_000 + i, n_agents=n)
            t = time.perf_counter()
            p = rt.prepare(net)
            prep.append(time.perf_counter() - t)
            for _ in range(args.intents):
                v = rng.dirichlet(np.ones(4))
                t = time.perf_counter()
                chain = rt.compose(p, v, 0, "qa", "a request")
                times["srl"].append(time.perf_counter() - t)
                scores["srl"].append(evaluate_chain(net, chain, v).Q_subjective)
                for w in (8, 32):
                    t = time.perf_counter()
                    found = beam_chain(p.state, v, w)
                    times[f"beam{w}"].append(time.perf_counter() - t)
                    q = evaluate_chain(net, found[0], v).Q_subjective if found else -1.0
                    scores[f"beam{w}"].append(q)
        out = {"agents": n, "requests": len(scores["srl"]), "prepare_s": float(np.mean(prep))}
        for k in scores:
            out[f"{k}_q"] = float(np.mean(scores[k]))
            out[f"{k}_p50_ms"] = float(np.median(times[k]) * 1e3)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
