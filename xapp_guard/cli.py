"""``xapp-guard``: the control-plane guard's command line.

Subcommands:

- ``record --seed S --out DIR [...]``: run the real stack with scripted attacks and keep
  what the sensor saw (:mod:`xapp_guard.record`; minutes, run it under the heavy lock);
- ``train [...]``: the self-evolution loop and every baseline on the training recording,
  detectors exported to ONNX with cards (:mod:`xapp_guard.experiment`; heavy);
- ``eval --test-seed S --json``: every method on the unseen test recording, detection
  delays and false alarms of the service pipeline (:mod:`xapp_guard.evaluate`);
- ``run``: the guard service (:mod:`xapp_guard.service`); one flag per
  :class:`~xapp_guard.settings.GuardSettings` field, each also ``GUARD_<NAME>``;
- ``features``: print the feature table;
- ``windows DIR --json``: counts of a recording's labelled windows.

A user error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from servicekit import cli


def cmd_record(args) -> int:
    from servicekit.logs import configure_logging
    from xapp_guard.config import RecordConfig
    from xapp_guard.record import Recorder

    if args.seed is None or args.out is None:
        raise cli.UsageError("--seed and --out are required")
    configure_logging(args.log_level, "auto")
    cfg = cli.config_from_args(RecordConfig, args)
    labels = Recorder(cfg).run()
    counts = Counter(f"{e['class']}/{'refused' if e.get('refused') else e['variant']}"
                     for e in labels["episodes"])  # fmt: skip
    cli.print_json({"out": str(cfg.out), "events": labels.get("events"),
                    "episodes": dict(sorted(counts.items())),
                    "benign_events": len(labels["benign_events"])})  # fmt: skip
    return 0


def cmd_train(args) -> int:
    from servicekit.logs import configure_logging
    from xapp_guard.config import EvolveConfig, ExperimentConfig, TrainConfig
    from xapp_guard.experiment import run

    configure_logging(args.log_level, "auto")
    cfg = cli.config_from_args(ExperimentConfig, args)
    evolve = cli.config_from_args(EvolveConfig, args)
    evolve.route_list()
    train = cli.config_from_args(TrainConfig, args, dest_prefix="train_")
    command = "xapp-guard train " + " ".join(sys.argv[2:])
    summary = run(cfg, evolve, train, command=command.strip())
    cli.print_json({m: v["val_macro_f1_mean"] for m, v in summary["methods"].items()})
    return 0


def cmd_eval(args) -> int:
    from xapp_guard.config import METHODS
    from xapp_guard.evaluate import evaluate

    models = args.models
    test_dir = args.corpus or models / "corpus" / f"seed-{args.test_seed}"
    if not (test_dir / "labels.json").is_file():
        raise cli.UsageError(
            f"no test recording at {test_dir}: record one with\n"
            f"  xapp-guard record --seed {args.test_seed} --out {test_dir} "
            "--first-part test --val-episodes 0"
        )
    train = (
        json.loads((models / "train.json").read_text()) if (models / "train.json").is_file() else {}
    )
    if f"seed-{args.test_seed}" in str(train.get("corpus", "")):
        raise cli.UsageError(f"seed {args.test_seed} is the training recording's seed")
    methods = args.methods or list(METHODS)
    report = evaluate(test_dir, models, args.test_seed, methods, args.clean)
    cli.print_json(report, args.json)
    return 0


def cmd_run(args) -> int:
    from xapp_guard.service import main_run
    from xapp_guard.settings import GuardSettings

    return main_run(GuardSettings.from_cli(args))


def cmd_features(args) -> int:
    from xapp_guard.features import FEATURES

    if args.json:
        cli.print_json([{"name": f.name, "unit": f.unit, "how": f.how} for f in FEATURES])
        return 0
    width = max(len(f.name) for f in FEATURES)
    for f in FEATURES:
        print(f"{f.name:<{width}}  {f.unit:<5}  {f.how}")
    return 0


def cmd_windows(args) -> int:
    from xapp_guard.corpus import load
    from xapp_guard.scenarios import CLASSES

    if not (args.dir / "labels.json").is_file():
        raise FileNotFoundError(2, "no recording (labels.json)", str(args.dir / "labels.json"))
    c = load(args.dir)
    out: dict[str, dict[str, int]] = {}
    for y, part in zip(c.y, c.part, strict=True):
        name = CLASSES[y] if y >= 0 else "ignored"
        out.setdefault(part or "none", {}).setdefault(name, 0)
        out[part or "none"][name] += 1
    cli.print_json({"windows": len(c.windows), "by_part": out}, args.json)
    return 0


def build_parser() -> cli.ArgumentParser:
    from xapp_guard.config import (
        MODELS,
        EvolveConfig,
        ExperimentConfig,
        RecordConfig,
        TrainConfig,
    )
    from xapp_guard.settings import GuardSettings

    parser = cli.ArgumentParser(prog="xapp-guard", description="Control-plane intrusion detection")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("record", help="record the real stack under scripted attacks")
    cli.add_config(p, RecordConfig)
    p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("train", help="self-evolution loop and baselines; export detectors")
    cli.add_config(p, ExperimentConfig)
    cli.add_config(p, EvolveConfig)
    cli.add_config(p, TrainConfig, exclude=("seed",), flags={n: f"--train-{n.replace('_', '-')}" for n in
                                          ("epochs", "lr", "weight_decay", "batch", "eval_every",
                                           "seed", "length", "hidden", "threads")},
                   dest_prefix="train_")  # fmt: skip
    p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="every method on an unseen test recording")
    p.add_argument("--test-seed", type=cli.bounded(int, ge=0), required=True,
                   help="seed of the test recording (models/guard/corpus/seed-S)")  # fmt: skip
    p.add_argument("--corpus", type=Path, default=None, help="the test recording's directory")
    p.add_argument("--models", type=Path, default=MODELS, help="detectors and train.json")
    p.add_argument("--clean", type=Path, default=None, help="a clean recording: false alarms")
    p.add_argument("--methods", type=cli.comma_list(), default=None, help="methods (default all)")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("run", help="the guard service: score windows, publish alerts",
                       description="Every setting also reads GUARD_<NAME>; a flag overrides it.")  # fmt: skip
    p.set_defaults(func=cmd_run, flags=cli.add_settings(p, GuardSettings))

    p = sub.add_parser("features", help="the window features (name, unit, how computed)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("windows", help="labelled windows of a recording")
    p.add_argument("dir", type=Path, help="recording directory")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_windows)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xapp-guard``."""
    args = build_parser().parse_args(argv)
    return cli.run(
        f"xapp-guard {args.command}", lambda: args.func(args), getattr(args, "flags", None)
    )


if __name__ == "__main__":
    sys.exit(main())
