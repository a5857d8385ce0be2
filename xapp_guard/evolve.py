"""The self-evolution loop and the methods it is compared with.

Per generation (Generative AI-in-the-loop, case study: the LLM's synthetic data is
checked against the real data and improved round by round):

1. **generate**: for every class, variant and route, ``per_cell`` prompts, each with
   examples drawn from the recorded episodes and the synthetic samples accepted so far,
   and a feedback sentence on the previous round of that cell;
2. **check**: :class:`~xapp_guard.quality.QualityChecks` (schema and bounds, duplicates,
   distance to the real class, the real-data classifier);
3. **accept and retrain**: a detector on the real data, the pool accepted so far and this
   generation's accepted samples;
4. **keep or drop**: the generation's samples join the pool only if the validation
   macro-F1 (mean over ``gate_seeds`` detectors: one detector's score moves by a few
   points from seed to seed) does not fall below the best so far, starting from the real
   data alone (the validation split is recorded data, never the test recording); the next
   prompts learn which it was.

The log (:class:`Generation` per round) records candidates, accepted share by route and
class, the reasons of the refusals, the distribution distance (MMD) of the accepted
samples and the validation F1.

The methods, each adding sequences to the same real training split:

- ``real_only``: nothing;
- ``noise_augmented``: jitter and SMOTE interpolation (:mod:`xapp_guard.augment`), as
  many sequences per class as the evolved pool has;
- ``synthetic``: the same LLM budget as the whole loop in one round, examples from the
  recording only, no feedback, every answer that can be realised kept (no checks);
- ``synthetic_evolved``: the loop's pool;
- ``random_scenarios``: no LLM: scenarios drawn uniformly within the schema's bounds,
  realised by the same model and put through the same checks, the loop's budget (what
  the stack model and the checks give without the LLM).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import structlog

from llmkit.chat import ChatModel
from xapp_guard.config import EvolveConfig, TrainConfig
from xapp_guard.fill import TemplateFiller
from xapp_guard.quality import QualityChecks
from xapp_guard.scenarios import CLASSES, SCHEMA, VARIANTS
from xapp_guard.synth import (
    Candidate,
    realise,
    scenario_prompt,
    scenario_template,
    window_prompt,
    window_template,
)
from xapp_guard.traffic import StackModel
from xapp_guard.train import fit, predict

log = structlog.get_logger("xapp_guard.evolve")


@dataclass
class Pool:
    """Accepted synthetic sequences with their classes and the candidates they came from."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    accepted: list[Candidate] = field(default_factory=list)

    def add(self, cands: list[Candidate]) -> None:
        for c in cands:
            self.x.append(c.x)
            self.y.append(c.y)
            self.route.extend([c.route] * len(c.y))
            self.accepted.append(c)

    def arrays(self, length: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.x:
            return np.zeros((0, length, n_features), np.float32), np.zeros(0, np.int64)
        return np.concatenate(self.x).astype(np.float32), np.concatenate(self.y)


@dataclass
class Generation:
    """What one round of the loop did."""

    generation: int
    candidates: int
    accepted: int
    accepted_share: float
    by_route: dict[str, dict[str, int]]
    by_class: dict[str, dict[str, int]]
    reasons: dict[str, int]
    mmd: dict[str, float]
    val_macro_f1: float
    best_before: float
    kept: bool
    pool_sequences: int


class Loop:
    """Generation, checks and training around one real training split.

    Args:
        x, y: real training sequences and classes; xv, yv: the validation split.
        episodes: the recorded training episodes (``labels.json`` entries) as examples.
        model: the stack model realising scenarios.
        chat: the LLM: a chat model answering freely, or SmolLM2 filling templates.
        cfg: the loop's configuration; train: the detector's training.
    """

    def __init__(self, x, y, xv, yv, episodes: list[dict], model: StackModel,
                 chat: ChatModel | TemplateFiller | None, cfg: EvolveConfig,
                 train: TrainConfig):  # fmt: skip
        self.x, self.y, self.xv, self.yv = x, y, xv, yv
        self.model, self.chat, self.cfg, self.train = model, chat, cfg, train
        self.rng = np.random.default_rng(cfg.seed)
        self.length = train.length
        self.examples: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for ep in episodes:
            self.examples[(ep["class"], ep["variant"])].append(dict(ep["params"]))
        # Legitimate situations have no recorded parameters: a few drawn from the schema
        # serve as their examples.
        from xapp_guard.scenarios import draw

        self.examples[("benign", "fast")] = [
            draw("benign", "fast", self.rng).params for _ in range(2 * cfg.examples)
        ]
        self.reference, _ = fit(x, y, xv, yv, train)
        self.reference_f1 = self.gate_score(np.zeros((0, *x.shape[1:]), np.float32),
                                            np.zeros(0, np.int64))  # fmt: skip
        self._n_seed = 0

    def probs(self, x: np.ndarray) -> np.ndarray:
        """The real-data detector's class probabilities (the classifier filter)."""
        return predict(self.reference, x)

    def checks(self) -> QualityChecks:
        q = QualityChecks(self.x, self.y, self.probs)
        q.remember_examples([p | {"class": c} for (c, _), ps in self.examples.items() for p in ps])
        return q

    # ---- prompts ----------------------------------------------------------------------
    def _real_sequences(self, cls: str, variant: str) -> np.ndarray:
        return self.x[self.y == CLASSES.index(cls)]

    def _cells(self) -> list[tuple[str, str]]:
        return [(c, v) for c in CLASSES for v in (VARIANTS if c != "benign" else ("fast",))]

    def prompts(self, route: str, pool: Pool, feedback: dict[tuple, str],
                n: int) -> list[tuple[str, str, list, list]]:  # fmt: skip
        """``n`` conversations per cell: (class, variant, messages, template)."""
        out = []
        for cls, variant in self._cells():
            fb = feedback.get((route, cls, variant), "")
            for _ in range(n):
                if route == "scenario":
                    real = self.examples.get((cls, variant), [])
                    synth = [c.scenario.params for c in pool.accepted
                             if c.route == route and c.cls == cls and c.variant == variant
                             and c.scenario is not None]  # fmt: skip
                    ex = self._sample(real, synth)
                    out.append((cls, variant, scenario_prompt(cls, variant, ex, fb),
                                scenario_template(cls)))  # fmt: skip
                else:
                    real_x = list(self._real_sequences(cls, variant))
                    synth_x = [c.own[0] for c in pool.accepted
                               if c.route == route and c.cls == cls and c.variant == variant]  # fmt: skip
                    ex = self._sample(real_x, synth_x)
                    out.append((cls, variant, window_prompt(cls, variant, ex, fb),
                                window_template(ex)))  # fmt: skip
        return out

    def _sample(self, real: list, synth: list) -> list:
        k = self.cfg.examples
        pick = []
        if synth:  # the loop's own accepted samples seed the next round
            idx = self.rng.choice(len(synth), size=min(len(synth), k // 2 + 1), replace=False)
            pick += [synth[i] for i in idx]
        if real:
            idx = self.rng.choice(len(real), size=min(len(real), k - len(pick)), replace=False)
            pick += [real[i] for i in idx]
        order = self.rng.permutation(len(pick))
        return [pick[i] for i in order]

    # ---- candidates -----------------------------------------------------------------
    def ask(self, route: str, pool: Pool, feedback: dict[tuple, str], n: int) -> list[Candidate]:
        """Prompt the LLM and realise its answers."""
        assert self.chat is not None
        prompts = self.prompts(route, pool, feedback, n)
        if isinstance(self.chat, TemplateFiller):
            answers = [self.chat.fill(p[2], p[3], self.cfg.temperature) for p in prompts]
        else:
            tokens = self.cfg.max_tokens if route == "scenario" else self.cfg.window_tokens
            answers = self.chat.chat([p[2] for p in prompts], max_tokens=tokens,
                                     temperature=self.cfg.temperature)  # fmt: skip
        out = []
        for (cls, variant, _, _), ans in zip(prompts, answers, strict=True):
            c = Candidate(route, cls, variant, ans.text or "")
            if not ans.ok:
                c.reason = f"schema: no answer ({ans.error})"
            else:
                self.realise(c)
            out.append(c)
        return out

    def realise(self, c: Candidate) -> None:
        self._n_seed += 1
        realise(c, self.model, self.length, seed=self.cfg.seed * 1_000_003 + self._n_seed)

    def random_candidates(self, n: int) -> list[Candidate]:
        """Scenarios drawn uniformly within the schema's bounds (no LLM)."""
        import json

        out = []
        for cls, variant in self._cells():
            for _ in range(n):
                params = {}
                for name, p in SCHEMA[cls].items():
                    if p.choices:
                        params[name] = str(self.rng.choice(p.choices))
                    elif p.integer:
                        params[name] = int(self.rng.integers(int(p.low), int(p.high) + 1))
                    else:
                        params[name] = float(self.rng.uniform(p.low, p.high))
                c = Candidate("scenario", cls, variant, json.dumps(params))
                self.realise(c)
                out.append(c)
        return out

    # ---- training ---------------------------------------------------------------------
    def fit_with(self, xs: np.ndarray, ys: np.ndarray, seed: int = 0):
        x = np.concatenate([self.x, xs]) if len(xs) else self.x
        y = np.concatenate([self.y, ys]) if len(ys) else self.y
        cfg = TrainConfig(**{**asdict(self.train), "seed": seed})
        return fit(x, y, self.xv, self.yv, cfg, scale_from=self.x)

    def gate_score(self, xs: np.ndarray, ys: np.ndarray) -> float:
        """Mean validation macro-F1 of ``gate_seeds`` detectors trained with ``xs``."""
        f1 = [self.fit_with(xs, ys, seed)[1]["val_macro_f1"] for seed in range(self.cfg.gate_seeds)]
        return round(float(np.mean(f1)), 4)

    # ---- the loop -----------------------------------------------------------------------
    def evolve(
        self, on_generation: Callable[[Generation], None] | None = None
    ) -> tuple[Pool, list[Generation]]:
        """Run the self-evolution loop; returns the accepted pool and the per-round log."""
        pool = Pool()
        checks = self.checks()
        best = self.reference_f1
        feedback: dict[tuple, str] = {}
        history: list[Generation] = []
        for g in range(1, self.cfg.generations + 1):
            cands: list[Candidate] = []
            for route in self.cfg.route_list():
                cands += self.ask(route, pool, feedback, self.cfg.per_cell)
            for c in cands:
                c.reason = checks.check(c)
            accepted = [c for c in cands if not c.reason]
            trial = Pool(list(pool.x), list(pool.y), list(pool.route), list(pool.accepted))
            trial.add(accepted)
            xs, ys = trial.arrays(self.length, self.x.shape[-1])
            f1 = self.gate_score(xs, ys)
            kept = bool(accepted) and f1 >= best - self.cfg.tolerance
            if kept:
                pool = trial
            gen = self._record(g, cands, accepted, checks, f1, best, kept, pool)
            best = max(best, f1) if kept else best
            feedback = self._feedback(cands, kept)
            history.append(gen)
            log.info("generation", **{k: v for k, v in asdict(gen).items()
                                       if k in ("generation", "candidates", "accepted",
                                                "val_macro_f1", "kept")})  # fmt: skip
            if on_generation is not None:
                on_generation(gen)
        return pool, history

    def _record(self, g, cands, accepted, checks, f1, best, kept, pool) -> Generation:
        by_route: dict[str, dict[str, int]] = defaultdict(lambda: {"candidates": 0, "accepted": 0})
        by_class: dict[str, dict[str, int]] = defaultdict(lambda: {"candidates": 0, "accepted": 0})
        for c in cands:
            for d in (by_route[c.route], by_class[c.cls]):
                d["candidates"] += 1
                d["accepted"] += int(not c.reason)
        reasons = Counter(c.reason.split(":", 1)[0] for c in cands if c.reason)
        mmd = {}
        for cls in CLASSES:
            own = [c.own for c in accepted if c.cls == cls]
            if own:
                mmd[cls] = round(checks.mmd(np.concatenate(own), CLASSES.index(cls)), 4)
        return Generation(
            generation=g, candidates=len(cands), accepted=len(accepted),
            accepted_share=round(len(accepted) / max(1, len(cands)), 4),
            by_route=dict(by_route), by_class=dict(by_class), reasons=dict(reasons), mmd=mmd,
            val_macro_f1=f1, best_before=best, kept=kept,
            pool_sequences=sum(len(v) for v in pool.y),
        )  # fmt: skip

    def _feedback(self, cands: list[Candidate], kept: bool) -> dict[tuple, str]:
        cells: dict[tuple, list[Candidate]] = defaultdict(list)
        for c in cands:
            cells[(c.route, c.cls, c.variant)].append(c)
        out = {}
        for key, cs in cells.items():
            ok = sum(not c.reason for c in cs)
            why = Counter(c.reason.split(":", 1)[0] for c in cs if c.reason)
            text = f"Last round {ok} of {len(cs)} new lines were accepted"
            if why:
                text += " (refused: " + ", ".join(f"{r} {n}" for r, n in why.most_common()) + ")"
            text += "; they improved the detector. " if kept and ok else ". "
            bounds = [c.reason for c in cs if c.reason.startswith("schema:") and "must" in c.reason]
            if bounds:  # the field and its bounds, as the checks worded them
                text += bounds[0].split(":", 1)[1].strip().split(" (got")[0] + ". "
            out[key] = text
        return out
