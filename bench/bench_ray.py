"""Episodes per second of SRL training: in one process, and with 1 and 2 Ray rollout
workers (``xapp-composer train --ray auto --workers N``), on this machine.

Each run trains the same configuration for ``--iterations`` iterations of
``--batch`` episodes (no validation inside the loop but the first iteration's) and reports
the loop's episodes per second after the first iteration, from its training curve; ``speedup_2_over_1`` is the 2-worker rate over the
1-worker rate. Synthetic E-LAM predictions (no rApp needed); the per-episode work is the
same as with the rApp's.

Prints one JSON object. Usage: ``python bench/bench_ray.py [--iterations 6] [--batch 256]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

from xapp_composer.configs import DEFAULT_ELAMS, TrainConfig
from xapp_composer.data import training_sets
from xapp_composer.train import train


def rate(run: Path, name: str) -> float:
    """Episodes per second of a run's loop after its first iteration (warm-up)."""
    rows = list(csv.DictReader((run / f"{name}.curve.csv").open()))
    first, last = rows[0], rows[-1]
    episodes = float(last["episodes"]) - float(first["episodes"])
    return episodes / (float(last["seconds"]) - float(first["seconds"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256, help="episodes per iteration")
    args = ap.parse_args(argv)
    tr, val = training_sets(list(DEFAULT_ELAMS), "synthetic", seed=0)
    out: dict = {"iterations": args.iterations, "batch_episodes": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        for label, ray, workers in (("in_process", "", 1), ("ray_1", "auto", 1),
                                    ("ray_2", "auto", 2)):  # fmt: skip
            cfg = TrainConfig(
                name=label, max_iterations=args.iterations, batch_episodes=args.batch,
                eval_every=10**9, minutes=60, ray=ray, workers=workers,
            )  # fmt: skip
            train(cfg, tr, val, Path(tmp), progress=False)
            out[f"{label}_episodes_per_s"] = round(rate(Path(tmp), label), 1)
    out["speedup_2_over_1"] = round(out["ray_2_episodes_per_s"] / out["ray_1_episodes_per_s"], 2)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
