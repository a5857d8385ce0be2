"""Does training on Ray change the policy's quality? The general SRL policy trained in one
process and with ``--ray auto --workers 2``, for the same number of episodes and
otherwise the same configuration, each scored on the dev intents.

Each run is ``xapp-composer train --name srl-general --max-iterations N`` (its
schedules anneal over those N iterations), exported with ``xapp-composer export`` into its
own models directory next to a copy of the shipped ``drl-even`` policy (the evaluation
needs one; nothing under ``models/policy`` is written), and scored with ``xapp-composer
eval --intents <dev intents> --llm off --json``. The two runs sample different networks
(each Ray worker has its own pool and random stream), so the difference includes
seed-to-seed variation as well as any effect of Ray.

``--single-process-from`` takes the single-process run from an earlier output of this
script with the same seed, iterations and intents instead of training it again (the
single-process loop does not depend on the Ray code), for a Ray run of new Ray code or a
second Ray run of one seed; the output names the file it came from.

Prints one JSON object: per run its training summary (iterations, episodes, seconds,
best validation score) and the SRL normalised score on the dev intents, and
``srl_difference`` (Ray minus single process). Usage:
``python bench/ray_parity.py --intents /work/shared/spec/dev_intents.jsonl [--iterations 500]
[--single-process-from models/policy/report/ray_parity_seed0.json]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from xapp_composer.artefacts import MODELS_DIR

RUNS = {"single_process": [], "ray_2": ["--ray", "auto", "--workers", "2"]}


def composer(*args: str) -> dict:
    """Run ``xapp-composer`` and parse the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", "xapp_composer.cli", *args],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intents", type=Path, required=True, help="the dev intents (JSON Lines)")
    ap.add_argument("--iterations", type=int, default=500, help="PPO iterations per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--single-process-from", type=Path, default=None,
        help="reuse the single-process run of this earlier output (same seed, iterations, intents)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    out: dict = {"iterations": args.iterations, "seed": args.seed, "intents": str(args.intents)}
    runs = dict(RUNS)
    if args.single_process_from is not None:
        earlier = json.loads(args.single_process_from.read_text())
        for key in ("iterations", "seed", "intents"):
            if earlier[key] != out[key]:
                ap.error(f"--single-process-from {args.single_process_from}: its {key} is "
                         f"{earlier[key]!r}, this run's {out[key]!r}")  # fmt: skip
        out["single_process"] = earlier["single_process"]
        out["single_process_from"] = str(args.single_process_from)
        del runs["single_process"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in runs.items():
            runs, models = Path(tmp) / label / "runs", Path(tmp) / label / "models"
            trained = composer(
                "train", "--name", "srl-general", "--max-iterations", str(args.iterations),
                "--minutes", "600", "--seed", str(args.seed), "--out", str(runs), "--quiet",
                *extra,
            )  # fmt: skip
            composer("export", "--runs", str(runs), "--name", "srl-general", "--out", str(models))
            for f in MODELS_DIR.glob("drl-even.*"):
                shutil.copy(f, models / f.name)
            report = composer(
                "eval", "--intents", str(args.intents), "--llm", "off", "--json",
                "--models", str(models),
            )  # fmt: skip
            out[label] = {
                "train": {k: trained[k] for k in ("iterations", "episodes", "seconds", "best")},
                "srl_normalized_score": report["srl"]["normalized_score"],
                "srl_per_app": {
                    a: r["normalized_score"] for a, r in report["srl"]["per_app"].items()
                },
                "extra_flags": " ".join(extra),
            }
    out["srl_difference"] = (
        out["ray_2"]["srl_normalized_score"] - out["single_process"]["srl_normalized_score"]
    )
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
