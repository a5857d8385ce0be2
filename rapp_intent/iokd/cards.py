"""Model cards of IoKD artefacts: what ``distill`` stores in them, what the report reads.

``rapp-intent distill`` evaluates every artefact it writes through the rApp's own class
and stores, per evaluation set, the report with the sha256 of the set's content and the
E-LAM's decoding options (:func:`card_metrics`). ``rapp-intent iokd-report`` takes a row
from the card when the card covers exactly the sets it evaluates, with the weights on
disk matching the card (:func:`card_evaluation`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from rapp_intent.evaluate import predict, report
from rapp_intent.iokd.config import BUILD_FILE
from rapp_intent.iokd.data import Sample, heldout, load_evaluation, load_labelled
from rapp_intent.iokd.dataset import dataset_path
from servicekit.integrity import sha256_file

log = structlog.get_logger(__name__)

CARD_FILE = "card.json"


def read_card(folder: Path) -> dict[str, Any] | None:
    """The model card of an artefact folder (None: no card or not readable JSON)."""
    try:
        return json.loads((Path(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_card(folder: Path, card: dict[str, Any]) -> Path:
    """Write ``card`` as the folder's ``card.json`` (indented, trailing newline)."""
    path = Path(folder) / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path


def evaluation_sets(dev: Path | None) -> dict[str, list[Sample]]:
    """The held-out split and, when the file exists, the dev set (evaluation only)."""
    sets = {"heldout": heldout(load_labelled())}
    if dev is not None:
        if dev.exists():
            sets["dev"] = load_evaluation(dev)
        else:
            log.warning("report.no_dev_set", path=str(dev))
    return sets


def set_digest(samples: Sequence[Sample]) -> str:
    """sha256 of an evaluation set's content: prompts, applications and labels, in order."""
    rows = [[s.prompt, s.app, [round(x, 6) for x in s.s]] for s in samples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def card_metrics(elam: Any, sets: dict[str, list]) -> tuple[dict[str, float], dict[str, Any]]:
    """Flat card metrics (``heldout_mse`` ...) and the full per-app reports of ``elam``."""
    flat: dict[str, float] = {}
    full: dict[str, Any] = {}
    for name, samples in sets.items():
        rep = report(predict(elam, samples), samples)
        rep["sha256"] = set_digest(samples)  # lets iokd-report reuse this evaluation
        rep["decoding"] = dict(elam.decoding_options)  # ... when made the same way
        full[name] = rep
        for key in ("mse", "mae", "failure_rate"):
            value = rep["overall"][key]
            if value == value:  # not NaN
                flat[f"{name}_{key}"] = round(float(value), 6)
        flat[f"{name}_n"] = rep["overall"]["n"]
    return flat, full


def data_card(samples: Sequence[Sample], apps: Sequence[str], data_dir: Path) -> dict[str, Any]:
    """The card's ``data`` entry: which D_IoKD files (sha256) and build trained the artefact."""
    build = {}
    build_path = Path(data_dir) / BUILD_FILE
    if build_path.exists():
        b = json.loads(build_path.read_text(encoding="utf-8"))
        build = {"clam": b.get("clam"), "config": b.get("config")}
    return {
        "description": "D_IoKD (eqs. 19-26): train split of agentnet/data/intents plus "
        "synthetic samples; held-out split and dev_intents.jsonl never used",
        "apps": list(apps),
        "files": {
            dataset_path(a, data_dir).name: sha256_file(dataset_path(a, data_dir)) for a in apps
        },
        "samples": len(samples),
        "synthetic": sum(s.origin == "synthetic" for s in samples),
        "build": build,
    }


def card_evaluation(
    path: Path, sets: dict[str, list[Sample]], decoding: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The evaluation stored in an artefact's card, if it covers exactly these sets.

    The card must name the sha256 of its weights, which must match the file on disk, and
    hold, for every set, a report whose ``sha256`` is the set's :func:`set_digest` and
    whose ``decoding`` equals ``decoding`` (the E-LAM's ``decoding_options`` as it would
    be loaded now; a report without the key counts as made with none).
    """
    card = read_card(path)
    if card is None:
        return None
    weights = path / str(card.get("artefact", ""))
    if not card.get("sha256") or not weights.is_file() or sha256_file(weights) != card["sha256"]:
        return None
    stored = card.get("evaluation") or {}
    out = {}
    for name, samples in sets.items():
        rep = stored.get(name)
        if not rep or rep.get("sha256") != set_digest(samples):
            return None
        if (rep.get("decoding") or {}) != (decoding or {}):
            return None
        out[name] = {"overall": rep["overall"], "per_app": rep["per_app"]}
    return {"card": card, "reports": out}


def card_setup(path: Path) -> dict[str, Any] | None:
    """An artefact's loss settings, seed and mean beta, read once from its card."""
    card = read_card(path)
    if card is None:
        return None
    training = card.get("training", {})
    cfg = training.get("config", {})
    loss = {"kind": card.get("loss", "iokd"), **cfg.get("loss", {})}
    return {**loss, "seed": cfg.get("seed", 0), "beta_mean": training.get("beta_mean")}
