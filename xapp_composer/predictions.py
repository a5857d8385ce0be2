"""E-LAM predictions for SRL: made by the rApp's models, kept in files, and resampled.

Training must not run language models in its inner loop, so every prediction the policy
sees is precomputed here:

- For evaluation and validation prompts, the rApp's own E-LAMs translate the prompt
  (``rapp-intent predict``: the code the gRPC service runs, without the in-context
  memory), and the results are kept in files per E-LAM (:mod:`agentnet.predictions`).
- For training prompts, the distilled E-LAMs have seen those prompts, so their
  predictions there would be too good to be true. Instead each training label gets an
  error drawn from the same E-LAM's real errors on the held-out split of the same
  application (residual resampling), several draws per prompt. The policy thus learns
  how much to trust each E-LAM from honest errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agentnet.intents import APP_PROFILES, APPS, LabelledIntent
from agentnet.predictions import MISSING, PredictionFile

CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "elam-predictions"
"""Where the prediction files live (one per E-LAM)."""
ELAM_PARAMS = {"minilm": 22.7e6, "smollm2": 134.5e6}
"""Parameter counts used for fees when the rApp's registry is not importable."""


class PredictionsUnavailable(RuntimeError):
    """The rApp's models could not translate the prompts (``rapp-intent predict`` failed)."""


def rapp_predictions(
    elam_ids: Sequence[str],
    intents: Sequence[LabelledIntent],
    *,
    cache_dir: Path = CACHE_DIR,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    """Every prompt translated by each E-LAM of the rApp, through its prediction files.

    ``rapp-intent predict`` (a separate process: this package never imports the rApp)
    brings ``cache_dir/<elam>.json`` up to date for these intents; they are then read
    here. A failed translation falls back to the application's profile vector, as the
    rApp's memory does for a new application; the failures are reported.

    Returns:
        ``(predictions {id: (M, 4)}, n_parameters {id: count}, failed {id: (M,) bool})``.

    Raises:
        PredictionsUnavailable: the rApp's command failed (its message is included).
    """
    cache_dir = Path(cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        requests = Path(tmp) / "intents.jsonl"
        requests.write_text(
            "".join(
                json.dumps({"prompt": i.prompt, "s": list(i.s), "app": i.app}) + "\n"
                for i in intents
            ),
            encoding="utf-8",
        )
        cmd = [
            sys.executable,
            "-m",
            "rapp_intent.cli",
            "predict",
            "--models",
            ",".join(elam_ids),
            "--intents",
            str(requests),
            "--out",
            str(cache_dir),
        ]
        if not progress:
            cmd.append("--no-progress")
        done = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=None if progress else subprocess.PIPE,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        detail = (done.stderr or "").strip().splitlines()[-1:] or ["(no message)"]
        raise PredictionsUnavailable(
            f"rapp-intent predict failed (exit {done.returncode}): {detail[0]}; E-LAM "
            "predictions need the rApp's models (pip install '.[rapp]')"
        )
    preds: dict[str, np.ndarray] = {}
    params: dict[str, float] = {}
    failed: dict[str, np.ndarray] = {}
    for eid in elam_ids:
        store = PredictionFile.read(cache_dir / f"{eid}.json")
        params[eid] = store.n_parameters
        out = np.zeros((len(intents), 4))
        bad = np.zeros(len(intents), dtype=bool)
        for k, x in enumerate(intents):
            v = store.get(x.prompt, x.app)
            if v is None or v == MISSING:
                bad[k] = True
                v = APP_PROFILES[x.app]
            out[k] = v
        preds[eid], failed[eid] = out, bad
    return preds, params, failed


def residual_predictions(
    train: Sequence[LabelledIntent],
    heldout: Sequence[LabelledIntent],
    heldout_preds: np.ndarray,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Training predictions by residual resampling: label + a real held-out error of the
    same E-LAM and application, clipped to the simplex. Returns (M * draws, 4), each
    training intent repeated ``draws`` times (in order)."""
    true_h = np.array([h.s for h in heldout])
    resid = heldout_preds - true_h
    by_app = {a: resid[[h.app == a for h in heldout]] for a in APPS}
    out = np.zeros((len(train) * draws, 4))
    for i, t in enumerate(train):
        pool = by_app[t.app] if len(by_app[t.app]) else resid
        picks = pool[rng.integers(len(pool), size=draws)]
        v = np.clip(np.asarray(t.s) + picks, 1e-4, None)
        out[i * draws : (i + 1) * draws] = v / v.sum(axis=1, keepdims=True)
    return out
