"""``lameta-studies``: offline studies that need several apps.

- ``srl-report --intents FILE.jsonl``: the paper's Figs. 9-11 and the generalisation
  study of the SRL policies (Fig. 11 runs the rApp's in-context calibration, eqs. 44-46,
  in front of the xApp's policies); writes ``models/policy/report/srl_report.json`` and
  ``fig9_factors.png``.
- ``nego-timeline [--llm local|openai|scripted] [--design soft]``: maestro Fig. 5, the
  emulator and the negotiation service over a scripted timeline of outages and intents;
  writes ``models/negotiation/report/timeline_<llm>-<design>.{log.jsonl,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agentnet.config import DEFAULT
from agentnet.intents import APPS

MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "policy"


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def cmd_report(args) -> int:
    from agentnet.intents import load_intents, project_intents
    from lameta_studies import srl_report as R
    from xapp_composer.data import evaluation_requests
    from xapp_composer.runtime import PolicyRuntime
    from xapp_composer.scoring import EvalSet

    models = Path(args.models)
    out_dir = models / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    general = PolicyRuntime(models / "srl-general.onnx")
    even = PolicyRuntime(models / "drl-even.onnx")
    per_app = {
        a: PolicyRuntime(models / f"srl-{a}.onnx")
        for a in APPS
        if (models / f"srl-{a}.onnx").exists()
    }
    elam = args.elam or general.elam_ids[0]
    intents = load_intents(args.intents)
    req = evaluation_requests(intents, general.elam_ids, args.predictions, seed=args.seed)
    result: dict = {"intents": str(args.intents), "seeds": args.seeds, "elam": elam}
    curves = {p.stem.replace(".curve", ""): p for p in sorted(models.glob("*.curve.csv"))}
    if curves:
        result["fig9_final_factors"] = R.fig9(curves, out_dir / "fig9_factors.png")
    ev = EvalSet.build(args.seeds, req, n_agents=args.agents)
    pairs = np.arange(len(ev))
    if len(per_app) == len(APPS):
        means = R.app_mean_vectors(project_intents("train"))
        result["fig10_policy_selection"] = R.fig10(ev, pairs, per_app, means, elam)
    result["fig11_icl_ablation"] = R.fig11(
        ev, lambda a: per_app.get(a, general), elam, seed=args.seed
    )
    result["generalisation"] = R.generalisation(
        req, args.seeds, args.sizes,
        {"srl": lambda a: per_app.get(a, general), "srl_general": lambda a: general,
         "drl_even": lambda a: even},
        elam,
    )  # fmt: skip
    R.write_json(out_dir / "srl_report.json", result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def cmd_timeline(args) -> int:
    from lameta_studies import negotiation_timeline as T
    from servicekit import cli

    summary = T.run(cli.config_from_args(T.TimelineConfig, args, "tl_"))
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lameta-studies", description="offline studies across the rApp and the xApp"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("srl-report", help="paper Figs. 9-11 and the generalisation study")
    p.add_argument("--intents", required=True, help="labelled intents (JSON Lines)")
    p.add_argument("--seeds", type=_ints, default=[101, 102, 103])
    p.add_argument("--sizes", type=_ints, default=[50, 200], help="N for generalisation")
    p.add_argument("--agents", type=int, default=DEFAULT.n_agents)
    p.add_argument("--models", default=str(MODELS_DIR))
    p.add_argument("--predictions", choices=("rapp", "synthetic"), default="rapp")
    p.add_argument("--elam", default=None, help="E-LAM whose predictions Figs. 10-11 use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)

    from lameta_studies.negotiation_timeline import TimelineConfig
    from servicekit import cli

    p = sub.add_parser("nego-timeline", help="maestro Fig. 5: negotiations over a timeline")
    cli.add_config(p, TimelineConfig, dest_prefix="tl_")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_timeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lameta-studies``."""
    args = build_parser().parse_args(argv)
    from servicekit.logs import configure_logging

    configure_logging("WARNING" if args.json else "INFO")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lameta-studies {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
