"""The labelled intents IoKD starts from: D_h and D_u (paper eq. 19), and the splits.

Every line of ``agentnet/data/intents/*.jsonl`` follows INTENTS.md plus an ``id`` and a
``split`` (``train`` or ``heldout``). IoKD uses them as follows:

- D_h, the history of all applications (eq. 19): the ``train`` split of every app;
- D_u, the samples of the target application: the ``train`` split of that app;
- the ``heldout`` split is only ever read by the evaluation (:mod:`.report`).

``dev_intents.jsonl`` (the shared development set) is evaluation-only: the loaders here
refuse it, so it cannot become training data, augmentation material, a demonstration or
a threshold-tuning set by accident.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agentnet.intents import (
    APPS,
    INTENTS_DIR,
    SPLITS,
    IntentFormatError,
    parse_intent,
    read_records,
)

EVALUATION_ONLY = ("dev_intents.jsonl",)
"""File names that are never read as training material."""

Vector = tuple[float, float, float, float]


class EvaluationDataError(ValueError):
    """An evaluation-only file was offered as training material."""


@dataclass(frozen=True)
class Sample:
    """One sample of the IoKD pipeline: a labelled prompt plus what the steps add.

    Attributes:
        id: unique id (``qa-012`` for labelled data, ``qa-012~syn3`` for synthetic).
        prompt: the request text.
        s: the preference vector [w_C, w_B, w_L, w_P] (validated, sums to 1).
        app: application of the request (INTENTS.md id).
        split: ``train`` or ``heldout`` for labelled data; ``synthetic`` for augmented.
        origin: ``labelled`` (D_u or D_rel) or ``synthetic`` (eq. 23).
        source_id: for synthetic samples, the id of the demonstration it was made from.
        reasoning: the chain-of-thought path R(d) of eq. 22 (empty until explained).
        reasoning_by: who wrote ``reasoning``: ``clam`` or ``rubric`` (fallback).
        target_app: the application whose dataset D_IoKD this sample belongs to.
        role: ``user`` (D_u), ``related`` (D_rel, eq. 20) or ``synthetic``.
        similarity: max SBERT similarity to D_u (eq. 20a) for related samples.
        contrastive: the top-k contrastive vectors C^i of eq. 25.
        contrastive_ids: ids of the D_h samples those vectors come from.
    """

    id: str
    prompt: str
    s: Vector
    app: str
    split: str = "train"
    origin: str = "labelled"
    source_id: str = ""
    reasoning: str = ""
    reasoning_by: str = ""
    target_app: str = ""
    role: str = ""
    similarity: float | None = None
    contrastive: tuple[Vector, ...] = field(default_factory=tuple)
    contrastive_ids: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (INTENTS.md keys first, floats rounded to 1e-6)."""
        out = asdict(self)
        out["s"] = [round(x, 6) for x in self.s]
        out["contrastive"] = [[round(x, 6) for x in c] for c in self.contrastive]
        out["contrastive_ids"] = list(self.contrastive_ids)
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 6)
        order = ["id", "prompt", "s", "app", "split"]
        return {k: out[k] for k in order} | {k: v for k, v in out.items() if k not in order}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "") -> Sample:
        """Parse and validate one record (INTENTS.md rules plus the IoKD keys)."""
        base = parse_intent(obj, where)
        extra = {k: obj[k] for k in obj if k in _FIELDS and k not in ("prompt", "s", "app")}
        if "contrastive" in extra:
            extra["contrastive"] = tuple(tuple(float(x) for x in c) for c in extra["contrastive"])
        if "contrastive_ids" in extra:
            extra["contrastive_ids"] = tuple(str(x) for x in extra["contrastive_ids"])
        sample = cls(prompt=base.prompt, s=base.s, app=base.app, **extra)
        if not sample.id:
            raise IntentFormatError(f"{where}missing id")
        return sample

    def with_(self, **changes: Any) -> Sample:
        """A copy with some fields changed."""
        return replace(self, **changes)


_FIELDS = set(Sample.__dataclass_fields__)


def check_not_evaluation_only(path: str | Path) -> Path:
    """Refuse an evaluation-only file (``dev_intents.jsonl``) as training material.

    Raises:
        EvaluationDataError: when ``path`` names an evaluation-only file.
    """
    path = Path(path)
    if path.name in EVALUATION_ONLY:
        raise EvaluationDataError(
            f"{path} is evaluation-only (INTENTS.md): never training data, augmentation "
            "material, demonstrations or a tuning set"
        )
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file (blank lines skipped) with line numbers in errors."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise IntentFormatError(f"{path}:{lineno}: invalid JSON: {exc}") from None
    return out


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write JSON Lines atomically (temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def load_labelled(directory: str | Path = INTENTS_DIR) -> list[Sample]:
    """All labelled intents of ``directory/*.jsonl`` (both splits), validated.

    Raises:
        IntentFormatError: a malformed line, an unknown split or a duplicate id.
        EvaluationDataError: the directory holds an evaluation-only file.
    """
    directory = Path(directory)
    paths = sorted(directory.glob("*.jsonl"))
    if not paths:
        raise IntentFormatError(f"no *.jsonl files in {directory}")
    samples: list[Sample] = []
    seen: set[str] = set()
    for path in paths:
        check_not_evaluation_only(path)
        for obj, where in read_records(path):
            if obj.get("split") not in SPLITS:
                raise IntentFormatError(f"{where}split must be one of {SPLITS}")
            sample = Sample.from_json(obj, where).with_(origin="labelled")
            if sample.id in seen:
                raise IntentFormatError(f"{where}duplicate id {sample.id!r}")
            seen.add(sample.id)
            samples.append(sample)
    return samples


def history(samples: Sequence[Sample]) -> list[Sample]:
    """D_h of eq. 19: the ``train`` split of every application."""
    return [s for s in samples if s.split == "train"]


def user_samples(samples: Sequence[Sample], app: str) -> list[Sample]:
    """D_u: the ``train`` split of the target application ``app``."""
    if app not in APPS:
        raise ValueError(f"unknown application {app!r}; expected one of {APPS}")
    return [s for s in samples if s.split == "train" and s.app == app]


def heldout(samples: Sequence[Sample], app: str | None = None) -> list[Sample]:
    """The held-out split (evaluation only), optionally of one application."""
    return [s for s in samples if s.split == "heldout" and (app is None or s.app == app)]


def load_evaluation(path: str | Path) -> list[Sample]:
    """An evaluation file in INTENTS.md format (e.g. ``dev_intents.jsonl``).

    Only :mod:`.report` calls this; ids are made up when the file has none.
    """
    out = []
    for lineno, obj in enumerate(read_jsonl(path), 1):
        base = parse_intent(obj, f"{path}:{lineno}: ")
        out.append(
            Sample(
                id=str(obj.get("id") or f"{Path(path).stem}-{lineno:03d}"),
                prompt=base.prompt,
                s=base.s,
                app=base.app,
                split="evaluation",
            )
        )
    return out


def dedupe(samples: Sequence[Sample]) -> list[Sample]:
    """One copy per sample id, preferring the copy in its own application's dataset."""
    chosen: dict[str, Sample] = {}
    for s in samples:
        if s.id not in chosen or (s.target_app == s.app and chosen[s.id].target_app != s.app):
            chosen[s.id] = s
    return list(chosen.values())
