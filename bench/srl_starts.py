"""Multi-start decoding's m on training-side validation data: the number of starts the
xApp's ``XAPP_SRL_STARTS`` default is chosen from.

The pairs are those of the training's checkpoint selection, never the evaluation's: the
validation networks (:data:`xapp_composer.train.VALIDATION_SEEDS`, the first
``--networks`` of them at each size), :data:`~xapp_composer.train.VALIDATION_PAIRS`
requests drawn per network from the held-out split of the project's intents, translated
by the rApp's E-LAMs (:func:`xapp_composer.data.training_sets`). Neither the dev intents
nor the evaluation seeds (101-110) nor the large-scale bench's networks (20,000 and up)
are used.

For each size and each m, the shipped policies (per application, ``srl``, and general,
``srl_general``) decide every pair with m starts (:meth:`PolicyRuntime.decide`); each
decision is scored like ``xapp-composer eval`` (normalised episode bonus under the TRUE
vector) and against the exact optimum for the vector of the E-LAM the policy picked (its
own predictions): the gap is what the policy's optimisation loses. Latency is one
decision (E-LAM choice and composition) on a prepared state.

Prints one JSON object on one line (also written, indented, to ``--out``):

    python bench/srl_starts.py --agents 300,600 --starts 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from servicekit.logs import configure_logging
from xapp_composer.artefacts import MODELS_DIR
from xapp_composer.data import training_sets
from xapp_composer.evaluate import Policies, run_best_for_vectors, run_policy, score_decisions
from xapp_composer.scoring import EvalSet
from xapp_composer.train import VALIDATION_PAIRS, VALIDATION_SEEDS


def _ints(text: str) -> list[int]:
    return [int(a) for a in text.split(",") if a.strip()]


def run_size(policies: Policies, ev: EvalSet, starts: list[int], fee_of: dict[str, float]) -> dict:
    """Every m for both policies on the pairs of ``ev``."""
    pairs = np.arange(len(ev))
    ids = ev.requests.elam_ids
    out: dict = {"pairs": len(pairs), "networks": len(ev.nets), "methods": {}}
    for label, runtime_for in (
        ("srl", policies.for_app),
        ("srl_general", lambda app: policies.general),
    ):
        for m in starts:
            ms: list[float] = []
            chains, elams = run_policy(ev, pairs, runtime_for, starts=m, latency_ms=ms)
            got = score_decisions(ev, pairs, chains, elams, fee_of)
            own = ev.requests.preds[ev.req_idx[pairs], [ids.index(e) for e in elams]]
            best_chains, _ = run_best_for_vectors(ev, pairs, own)
            best = score_decisions(ev, pairs, best_chains, elams, fee_of)  # same E-LAM fee
            out["methods"][f"{label}_m{m}"] = {
                "normalized_score": float(got.normalized.mean()),
                "best_for_own_predictions": float(best.normalized.mean()),
                "gap": float((best.normalized - got.normalized).mean()),
                "feasible": float(got.feasible.mean()),
                "decide_p50_ms": float(np.median(ms)),
                "decide_p90_ms": float(np.percentile(ms, 90)),
            }
            print(label, m, out["methods"][f"{label}_m{m}"], file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", default="300,600", help="network sizes, comma list")
    ap.add_argument("--starts", default="1,2,4,8", help="m, comma list")
    ap.add_argument("--networks", type=int, default=4, help="validation networks per size")
    ap.add_argument("--models", type=Path, default=MODELS_DIR)
    ap.add_argument("--seed", type=int, default=0, help="seed of the pairs drawn")
    ap.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = ap.parse_args(argv)
    starts = _ints(args.starts)
    if not starts or min(starts) < 1:
        ap.error("--starts needs m of at least 1")
    if not 1 <= args.networks <= len(VALIDATION_SEEDS):
        ap.error(f"--networks must be in [1, {len(VALIDATION_SEEDS)}]")
    configure_logging("WARNING")  # stdout carries the JSON object only
    policies = Policies.load(args.models)
    _, val = training_sets(policies.general.elam_ids, "rapp", seed=args.seed)
    fee_of = dict(zip(val.elam_ids, val.fees.tolist(), strict=True))
    seeds = VALIDATION_SEEDS[: args.networks]
    result = {
        "command": "python bench/srl_starts.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "policies": {
            name: rt.version
            for name, rt in (("srl_general", policies.general), *policies.per_app.items())
        },
        "network_seeds": list(seeds),
        "requests": "held-out split of the project's intents (training's validation)",
        "sizes": {},
    }
    for n in _ints(args.agents):
        rng = np.random.default_rng(args.seed)
        ev = EvalSet.build(seeds, val, n_agents=n, per_network=VALIDATION_PAIRS, rng=rng)
        result["sizes"][str(n)] = run_size(policies, ev, starts, fee_of)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
