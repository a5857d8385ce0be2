"""``xapp-composer``: train, export, evaluate and benchmark the SRL policy.

Subcommands:

- ``train [--app APP] [--mode predicted|even] [--steps N] [--minutes M]``: PPO training;
  writes ``<out>/<name>.pt``, the training curve ``<name>.curve.csv`` and ``.png``.
- ``export [--name NAME ...]``: ``models/policy/<name>.onnx`` (+ encoder, model card),
  checked against torch on fresh networks.
- ``eval --intents FILE.jsonl [--seeds 101,102,...] [--requests N] [--agents 81] --json``.
- ``bench --agents 81 --decisions 1000 --json``.
- ``run --broker URL --rapp host:port [--policy FILE]``: the near-RT control loop
  (``xapp_composer.loop``; every flag also reads ``XAPP_<NAME>`` from the environment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agentnet.config import DEFAULT
from agentnet.intents import APPS

MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "policy"
RUNS_DIR = Path(__file__).resolve().parent.parent / "runs" / "policy"
DEFAULT_ELAMS = ("minilm", "smollm2")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def default_name(app: str | None, mode: str) -> str:
    """File stem of a policy: ``srl-<app|general>`` or ``drl-even``."""
    if mode == "even":
        return "drl-even"
    return f"srl-{app or 'general'}"


# ---- train ------------------------------------------------------------------------------------
def plot_curve(csv_path: Path, png_path: Path, title: str) -> None:
    """Training curve: validation score, return, and the factors C, B, L, P (paper Fig. 9)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    ep = np.array([float(r["episodes"]) for r in rows])

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r[name] not in ("", "nan") else np.nan for r in rows])

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    val = col("val_normalized_score")
    ok = np.isfinite(val)
    axes[0, 0].plot(ep[ok], val[ok], marker=".")
    axes[0, 0].set_title("validation normalised score")
    axes[0, 1].plot(ep, col("r_episode"), lw=0.8)
    axes[0, 1].set_title("episode bonus 10 Q*_s - F (true s)")
    for ax, key, label in [
        (axes[0, 2], "C", "capability C"),
        (axes[1, 0], "B", "information loss B"),
        (axes[1, 1], "L", "latency L (s)"),
        (axes[1, 2], "P_outage", "outage P"),
    ]:
        ax.plot(ep, col(key), lw=0.8)
        ax.set_title(label)
    for ax in axes.ravel():
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def cmd_train(args) -> int:
    from xapp_composer.data import training_sets
    from xapp_composer.train import TrainConfig, train

    name = args.name or default_name(args.app, args.mode)
    elams = [e for e in args.elams.split(",") if e]
    cfg = TrainConfig(name=name, app=args.app, mode=args.mode, minutes=args.minutes, seed=args.seed)
    for key in ("batch_episodes", "pool_size", "eval_every", "hidden", "init", "lr", "ent_coef"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.steps:
        per_iter = cfg.batch_episodes * (DEFAULT.n_steps + (1 if args.mode == "predicted" else 0))
        cfg.max_iterations = max(1, args.steps // per_iter)
    tr, val = training_sets(elams, args.predictions, app=args.app, seed=args.seed, progress=True)
    out = Path(args.out)
    _, summary = train(cfg, tr, val, out, progress=not args.quiet)
    plot_curve(out / f"{name}.curve.csv", out / f"{name}.curve.png", f"{name}: training")
    print(json.dumps({"name": name, "best": summary["best"], "iterations": summary["iterations"],
                      "episodes": summary["episodes"], "seconds": summary["seconds"],
                      "checkpoint": str(out / f"{name}.pt")}))  # fmt: skip
    return 0


# ---- export ----------------------------------------------------------------------------------
def cmd_export(args) -> int:
    import shutil

    from xapp_composer.export import export_onnx, load_checkpoint, parity_check, write_card
    from xapp_composer.export_tree import attach_tree

    src = Path(args.runs)
    names = args.name or sorted(p.stem for p in src.glob("*.pt"))
    if not names:
        print(f"xapp-composer export: no checkpoints in {src}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report = {}
    for name in names:
        ckpt = src / f"{name}.pt"
        if not ckpt.exists():
            print(f"xapp-composer export: {ckpt} not found", file=sys.stderr)
            return 2
        policy, summary = load_checkpoint(ckpt)
        path = out / f"{name}.onnx"
        export_onnx(policy, path)
        parity = parity_check(policy, path)
        worst = max(parity.values())
        if worst > 1e-4:
            print(f"xapp-composer export: {name}: ONNX parity error {worst:.3g}", file=sys.stderr)
            return 1
        for ext in (".curve.csv", ".curve.png"):
            if (src / f"{name}{ext}").exists():
                shutil.copy(src / f"{name}{ext}", out / f"{name}{ext}")
        card = write_card(path, policy, summary, parity)
        try:
            tree = attach_tree(policy, path)
        except ValueError as exc:
            print(f"xapp-composer export: {name}: {exc}", file=sys.stderr)
            return 1
        report[name] = {"onnx": str(path), "card": str(card), "parity_max_abs_error": worst,
                        "tabulated_parity": tree["parity"]}  # fmt: skip
    print(json.dumps(report))
    return 0


# ---- eval ------------------------------------------------------------------------------------
REFERENCE_MSES = (0.004, 0.008)
"""MSEs of the noisy-true-vector references (MODEL.md's calibration points)."""


def cmd_eval(args) -> int:
    from agentnet.intents import load_intents
    from xapp_composer import evaluate as E
    from xapp_composer.data import evaluation_requests
    from xapp_composer.runtime import PolicyRuntime
    from xapp_composer.scoring import EvalSet

    models = Path(args.models)
    srl_general = models / "srl-general.onnx"
    drl_even = models / "drl-even.onnx"
    for p in (srl_general, drl_even):
        if not p.exists():
            print(f"xapp-composer eval: {p} missing (train and export first)", file=sys.stderr)
            return 2
    general = PolicyRuntime(srl_general)
    per_app = {
        a: PolicyRuntime(models / f"srl-{a}.onnx")
        for a in APPS
        if (models / f"srl-{a}.onnx").exists()
    }
    even = PolicyRuntime(drl_even)
    elam_ids = general.elam_ids
    intents = load_intents(args.intents)
    req = evaluation_requests(
        intents, elam_ids, args.predictions, seed=args.seed, progress=not args.json
    )
    ev = EvalSet.build(args.seeds, req, n_agents=args.agents)
    rng = np.random.default_rng(args.seed)
    pairs = np.arange(len(ev))
    if args.requests and args.requests < len(pairs):
        pairs = np.sort(rng.choice(pairs, size=args.requests, replace=False))
    fee_of = dict(zip(req.elam_ids, req.fees.tolist(), strict=True))
    results = {}
    results["random"] = E.score_decisions(ev, pairs, *E.run_random(ev, pairs, args.seed), fee_of)
    results["greedy"] = E.score_decisions(ev, pairs, *E.run_greedy(ev, pairs, elam_ids[0]), fee_of)
    results["drl_even"] = E.score_decisions(
        ev, pairs, *E.run_policy(ev, pairs, lambda a: even), fee_of
    )
    llm_pairs = pairs if not args.llm_requests else pairs[: args.llm_requests]
    if args.llm != "off":
        from xapp_composer.llm_baseline import run_llm

        chains, elams, llm_fee = run_llm(ev, llm_pairs, backend=args.llm, progress=not args.json)
        results["llm_zero_shot"] = E.score_decisions(
            ev, llm_pairs, chains, elams, {**fee_of, **llm_fee}
        )
    results["srl"] = E.score_decisions(
        ev, pairs, *E.run_policy(ev, pairs, lambda a: per_app.get(a, general)), fee_of
    )
    if per_app:
        results["srl_general"] = E.score_decisions(
            ev, pairs, *E.run_policy(ev, pairs, lambda a: general), fee_of
        )
    # References (not methods): the exact best chain for the vector each policy decides on.
    results["ref_best_for_even"] = E.score_decisions(
        ev, pairs, *E.run_best_for(ev, pairs, None), fee_of
    )
    for e in elam_ids:
        results[f"ref_best_for_{e}"] = E.score_decisions(
            ev, pairs, *E.run_best_for(ev, pairs, e), fee_of
        )
    # MODEL.md's calibration points of the objective: the chain best for the user's
    # application-mean vector (means of the project's train split) and for the true vector
    # corrupted to MSE 0.004 and 0.008; no E-LAM fee.
    from agentnet.intents import project_intents

    train = project_intents("train")
    means = {a: np.mean([i.s for i in train if i.app == a], axis=0) for a in APPS}
    vectors = {"app_mean": E.app_mean_vectors(ev, pairs, means)}
    for mse in REFERENCE_MSES:
        vectors[f"true_mse_{mse}"] = E.noisy_true_vectors(ev, pairs, mse, seed=args.seed)
    for name, v in vectors.items():
        results[f"ref_best_for_{name}"] = E.score_decisions(
            ev, pairs, *E.run_best_for_vectors(ev, pairs, v), fee_of
        )
    out = {k: {**v.summary(elam_ids), "per_app": v.per_app(ev)} for k, v in results.items()}
    out["_meta"] = {
        "intents": str(args.intents),
        "seeds": args.seeds,
        "agents": args.agents,
        "pairs": len(pairs),
        "llm_pairs": len(llm_pairs) if args.llm != "off" else 0,
        "per_app_policies": sorted(per_app),
        "provider": general.provider,
        "predictions": args.predictions,
        # which graphs produced the numbers: a stale report is detectable against the cards
        "policies": {
            p.stem: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in [srl_general, drl_even, *(models / f"srl-{a}.onnx" for a in sorted(per_app))]
        },
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


# ---- bench -----------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from agentnet.network import generate_network
    from xapp_composer.runtime import PolicyRuntime

    rt = PolicyRuntime(Path(args.policy))
    nets = [generate_network(10_000 + i, n_agents=args.agents) for i in range(args.networks)]
    t0 = time.perf_counter()
    preps = [rt.prepare(net) for net in nets]
    prep_ms = (time.perf_counter() - t0) / len(nets) * 1e3
    prompts = ["render the scene for my headset, no lag", "summarise the lab results exactly"]
    apps = ["immersive", "critical"]
    vec = (0.2, 0.1, 0.5, 0.2)
    for i in range(min(20, args.decisions)):  # warm-up
        rt.decide(preps[i % len(preps)], apps[i % 2], prompts[i % 2], lambda e: vec)
    lat = np.empty(args.decisions)
    for i in range(args.decisions):
        t = time.perf_counter()
        rt.decide(preps[i % len(preps)], apps[i % 2], prompts[i % 2], lambda e: vec)
        lat[i] = time.perf_counter() - t
    out = {
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "provider": rt.provider,
        "agents": args.agents,
        "decisions": args.decisions,
        "networks": args.networks,
        "prepare_state_ms": prep_ms,
        "tabulated_steps": preps[0].tree_levels,
        "policy": str(args.policy),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


# ---- run -------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from xapp_composer.loop import main_run

    return main_run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xapp-composer", description="SRL policy: train, export, evaluate"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a policy with PPO")
    p.add_argument("--app", choices=APPS, default=None, help="one application (default: all)")
    p.add_argument("--mode", choices=("predicted", "even"), default="predicted",
                   help="'predicted' = SRL; 'even' = DRL (Even), s fixed at [0.25]*4")  # fmt: skip
    p.add_argument(
        "--name", default=None, help="policy name (default srl-<app|general> / drl-even)"
    )
    p.add_argument("--steps", type=int, default=None, help="environment steps to train for")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget")
    p.add_argument(
        "--elams", default=",".join(DEFAULT_ELAMS), help="E-LAM ids the policy picks from"
    )
    p.add_argument("--predictions", choices=("rapp", "synthetic"), default="rapp",
                   help="E-LAM predictions: the rApp's models, or a noisy stand-in")  # fmt: skip
    p.add_argument("--out", default=str(RUNS_DIR), help="checkpoint and curve directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-episodes", dest="batch_episodes", type=int, default=None)
    p.add_argument("--pool-size", dest="pool_size", type=int, default=None)
    p.add_argument("--eval-every", dest="eval_every", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--init", default=None,
                   help="warm start from a checkpoint (.pt), e.g. runs/policy/srl-general.pt")  # fmt: skip
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-4)")
    p.add_argument("--ent-coef", dest="ent_coef", type=float, default=None,
                   help="entropy bonus, annealed to 0 (default 0.01)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export checkpoints to ONNX with model cards")
    p.add_argument("--name", action="append", default=None, help="policy name (repeatable)")
    p.add_argument("--runs", default=str(RUNS_DIR), help="where the checkpoints are")
    p.add_argument("--out", default=str(MODELS_DIR), help="models/policy")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="SRL against the baselines on unseen networks")
    p.add_argument("--intents", required=True, help="labelled intents (JSON Lines)")
    p.add_argument("--seeds", type=_ints, default=[101, 102, 103, 104, 105], help="network seeds")
    p.add_argument("--requests", type=int, default=None, help="evaluate N (network, intent) pairs")
    p.add_argument("--agents", type=int, default=DEFAULT.n_agents, help="N")
    p.add_argument("--models", default=str(MODELS_DIR), help="directory of the ONNX policies")
    p.add_argument("--predictions", choices=("rapp", "synthetic"), default="rapp")
    p.add_argument("--llm", choices=("local", "openai", "off"), default="local",
                   help="C-LAM backend of the LLM zero-shot baseline")  # fmt: skip
    p.add_argument("--llm-requests", dest="llm_requests", type=int, default=48,
                   help="pairs for the (slow) LLM baseline; 0 = all")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="whole-decision latency of the ONNX policy")
    p.add_argument("--agents", type=int, default=81)
    p.add_argument("--decisions", type=int, default=1000)
    p.add_argument("--networks", type=int, default=10, help="network states cycled through")
    p.add_argument("--policy", default=str(MODELS_DIR / "srl-general.onnx"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("run", help="the near-RT control loop (MQTT + rApp + ONNX policy)")
    p.add_argument("--broker", default=None, help="mqtt://[user:pass@]host:port (XAPP_BROKER)")
    p.add_argument("--rapp", default=None, help="host:port of the intent rApp (XAPP_RAPP)")
    p.add_argument("--policy", default=None, help="ONNX policy (default: shipped srl-general)")
    p.add_argument("--network", default=None, help="network name in the topics")
    p.add_argument("--rapp-deadline-ms", dest="rapp_deadline_ms", type=float, default=None,
                   help="Translate deadline (ms)")  # fmt: skip
    p.add_argument("--max-state-age", dest="max_state_age", type=float, default=None,
                   help="reject requests on a state older than this (s)")  # fmt: skip
    p.add_argument("--health-host", dest="health_host", default=None)
    p.add_argument("--health-port", dest="health_port", type=int, default=None,
                   help="port of /ric/v1/health/* and /metrics (0: any)")  # fmt: skip
    p.add_argument("--client-id", dest="mqtt_client_id", default=None, help="MQTT client id")
    p.add_argument("--log-level", dest="log_level", default=None)
    p.add_argument("--log-format", dest="log_format", choices=("auto", "json", "console"),
                   default=None)  # fmt: skip
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xapp-composer``."""
    args = build_parser().parse_args(argv)
    if args.command != "run":  # ``run`` configures its own logging from its settings
        from servicekit.logs import configure_logging

        # Logs go to stderr so that ``--json`` output on stdout stays one parseable object.
        configure_logging("WARNING" if getattr(args, "json", False) else "INFO")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"xapp-composer {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
