"""``lameta-studies``: offline studies that need several apps.

- ``srl-report --intents FILE.jsonl``: the paper's Figs. 9-11 and the generalisation
  study of the SRL policies (Fig. 11 runs the rApp's in-context calibration, eqs. 44-46,
  in front of the xApp's policies); writes ``<models>/report/srl_report.json`` and
  ``fig9_factors.png``. Its flags come from :class:`SrlReportConfig`.
- ``nego-timeline [--llm local|openai|scripted] [--design soft]``: maestro Fig. 5, the
  emulator and the negotiation service over a scripted timeline of outages and intents;
  writes ``models/negotiation/report/timeline_<llm>-<design>.{log.jsonl,json,png}``. Its
  flags come from :class:`lameta_studies.negotiation_timeline.TimelineConfig`.

A user error (a bad value, a missing or tampered file) is one line on stderr naming the
flag or the file, exit code 2 (:func:`servicekit.cli.run`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agentnet.config import DEFAULT
from agentnet.intents import APPS, load_intents, project_intents
from lameta_studies import srl_report as R
from servicekit import cli
from servicekit.logs import configure_logging
from xapp_composer import cli as xcli
from xapp_composer.artefacts import MODELS_DIR, read_card
from xapp_composer.configs import MIN_AGENTS, PredictionSource
from xapp_composer.data import evaluation_requests
from xapp_composer.evaluate import Policies, application_means
from xapp_composer.scoring import EvalSet


@dataclass
class SrlReportConfig:
    """``lameta-studies srl-report``: Figs. 9-11 and the generalisation study."""

    intents: Path | None = field(
        default=None, metadata={"help": "labelled intents (JSON Lines); required"}
    )
    seeds: list[int] = field(
        default_factory=lambda: [101, 102, 103], metadata={"help": "network seeds", "ge": 0}
    )
    sizes: list[int] = field(
        default_factory=lambda: [50, 200],
        metadata={"help": "N of the generalisation study", "ge": MIN_AGENTS},
    )
    agents: int = field(
        default=DEFAULT.n_agents, metadata={"help": "N of Figs. 10-11", "ge": MIN_AGENTS}
    )
    models: Path = field(default=MODELS_DIR, metadata={"help": "directory of the ONNX policies"})
    predictions: PredictionSource = field(
        default="rapp", metadata={"help": "E-LAM predictions: the rApp's models or a stand-in"}
    )
    elam: str | None = field(
        default=None,
        metadata={"help": "E-LAM whose predictions Figs. 10-11 use (default: the policy's first)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed", "ge": 0})
    json: bool = field(default=False, metadata={"help": "one line of JSON"})


def cmd_report(args: argparse.Namespace) -> int:
    cfg = cli.config_from_args(SrlReportConfig, args)
    if not cfg.models.is_dir():
        raise cli.UsageError(f"--models {cfg.models}: no such directory")
    intents = load_intents(cfg.intents)
    general = cfg.models / "srl-general.onnx"
    if not general.is_file():
        raise cli.UsageError(f"--models {cfg.models}: no srl-general.onnx (train and export first)")
    elam_ids = read_card(general)["elam_ids"]
    elam = cfg.elam or elam_ids[0]
    if elam not in elam_ids:
        raise cli.UsageError(f"--elam {elam}: the policies pick from {elam_ids}")
    policies = Policies.load(cfg.models)
    out_dir = cfg.models / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    req = evaluation_requests(intents, policies.general.elam_ids, cfg.predictions, seed=cfg.seed)
    result: dict = {"intents": str(cfg.intents), "seeds": cfg.seeds, "elam": elam}
    curves = {p.stem.replace(".curve", ""): p for p in sorted(cfg.models.glob("*.curve.csv"))}
    if curves:
        result["fig9_final_factors"] = R.fig9(curves, out_dir / "fig9_factors.png")
    ev = EvalSet.build(cfg.seeds, req, n_agents=cfg.agents)
    pairs = np.arange(len(ev))
    if len(policies.per_app) == len(APPS):
        means = application_means(project_intents("train"))
        result["fig10_policy_selection"] = R.fig10(ev, pairs, policies.per_app, means, elam)
    result["fig11_icl_ablation"] = R.fig11(ev, policies.for_app, elam, seed=cfg.seed)
    result["generalisation"] = R.generalisation(
        req,
        cfg.seeds,
        cfg.sizes,
        {
            "srl": policies.for_app,
            "srl_general": lambda a: policies.general,
            "drl_even": lambda a: policies.even,
        },
        elam,
    )
    R.write_json(out_dir / "srl_report.json", result)
    cli.print_json(result, cfg.json)
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from lameta_studies import negotiation_timeline as T

    summary = T.run(cli.config_from_args(T.TimelineConfig, args, "tl_"))
    cli.print_json(summary, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="lameta-studies", description="offline studies across the rApp and the xApp"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("srl-report", help="paper Figs. 9-11 and the generalisation study")
    cli.add_config(p, SrlReportConfig)
    xcli.require(p, "intents")
    p.set_defaults(func=cmd_report)

    from lameta_studies.negotiation_timeline import TimelineConfig

    p = sub.add_parser("nego-timeline", help="maestro Fig. 5: negotiations over a timeline")
    cli.add_config(p, TimelineConfig, dest_prefix="tl_")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_timeline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lameta-studies``."""
    args = build_parser().parse_args(argv)
    configure_logging("WARNING" if args.json else "INFO")
    return xcli.run(f"lameta-studies {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
