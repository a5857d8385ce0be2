"""E-LAM predictions for SRL: computed by the rApp's models, cached, and calibrated.

Training must not run language models in its inner loop, so every prediction the policy
sees is precomputed here:

- For evaluation and validation prompts, the rApp's own E-LAMs translate the prompt
  (in-process, the same code the gRPC service runs, without the in-context memory), and
  the results are cached on disk per model artefact.
- For training prompts, the distilled E-LAMs have seen those prompts, so their
  predictions there would be too good to be true. Instead each training label gets an
  error drawn from the same E-LAM's real errors on the held-out split of the same
  application (residual resampling), several draws per prompt. The policy thus learns
  how much to trust each E-LAM from honest errors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim_ric.users import APP_PROFILES, APPS, LabelledIntent, parse_intent

DATA_DIR = Path(__file__).resolve().parent.parent / "rapp_intent" / "data" / "intents"
CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "elam-predictions"
ELAM_PARAMS = {"minilm": 22.7e6, "smollm2": 134.5e6}
"""Parameter counts used for fees when the rApp's registry is not importable."""


def load_split(split: str, data_dir: Path = DATA_DIR) -> list[LabelledIntent]:
    """The project's labelled intents of one split ("train" or "heldout")."""
    out = []
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                if obj.get("split") == split:
                    out.append(parse_intent(obj, f"{path.name}: "))
    if not out:
        raise FileNotFoundError(f"no intents of split {split!r} under {data_dir}")
    return out


def _key(prompt: str, app: str) -> str:
    return hashlib.sha1(f"{app}\x00{prompt}".encode()).hexdigest()


class PredictionCache:
    """Predictions of one E-LAM artefact, on disk (JSON), keyed by prompt and app.

    ``variant`` names how the outputs were decoded (:attr:`ELam.variant`, e.g.
    ``expected-b4``), so that changing the rApp's decoding settings never reuses
    predictions made another way.
    """

    def __init__(self, elam_id: str, artefact: str, cache_dir: Path = CACHE_DIR, variant: str = ""):
        tag = f"-{variant}" if variant else ""
        self.path = Path(cache_dir) / f"{elam_id}-{artefact[:16]}{tag}.json"
        self.data: dict[str, list[float] | None] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def get(self, prompt: str, app: str):
        return self.data.get(_key(prompt, app), "missing")

    def put(self, prompt: str, app: str, vector: Sequence[float] | None) -> None:
        self.data[_key(prompt, app)] = None if vector is None else [float(v) for v in vector]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))


def rapp_predictions(
    elam_ids: Sequence[str],
    intents: Sequence[LabelledIntent],
    *,
    cache_dir: Path = CACHE_DIR,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    """Translate every prompt with each E-LAM of the rApp (cached).

    A failed translation falls back to the application's profile vector, as the rApp's
    memory does for a new application; the failures are reported.

    Returns:
        ``(predictions {id: (M, 4)}, n_parameters {id: count}, failed {id: (M,) bool})``.
    """
    from rapp_intent.elam.base import MemoryContext
    from rapp_intent.elam.registry import load_elam  # the rApp's own models
    from rapp_intent.settings import RappSettings

    settings = RappSettings()
    preds: dict[str, np.ndarray] = {}
    params: dict[str, float] = {}
    failed: dict[str, np.ndarray] = {}
    for eid in elam_ids:
        elam = load_elam(eid, settings)
        params[eid] = float(elam.n_parameters)
        cache = PredictionCache(eid, str(elam.artefact), cache_dir, variant=elam.variant)
        todo = [i for i, it in enumerate(intents) if cache.get(it.prompt, it.app) == "missing"]
        batch = 32
        it = range(0, len(todo), batch)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"translate {eid}", unit="batch")
        for start in it:
            chunk = [intents[i] for i in todo[start : start + batch]]
            results = elam.translate(
                [c.prompt for c in chunk], [MemoryContext(app=c.app) for c in chunk]
            )
            for c, r in zip(chunk, results, strict=True):
                cache.put(c.prompt, c.app, r.vector if r.ok else None)
            cache.save()
        out = np.zeros((len(intents), 4))
        bad = np.zeros(len(intents), dtype=bool)
        for i, x in enumerate(intents):
            v = cache.get(x.prompt, x.app)
            if v is None or v == "missing":
                bad[i] = True
                v = APP_PROFILES[x.app]
            out[i] = v
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
