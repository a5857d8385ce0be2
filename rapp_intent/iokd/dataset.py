"""Adaptive dataset construction (paper eqs. 19-26): D_IoKD per application, as JSON Lines.

For each target application:

1. D_u = its ``train`` samples, D_h = the ``train`` samples of all applications (eq. 19);
2. D_rel = history samples within ``tau_min`` SBERT similarity of D_u (eq. 20);
3. D_demo = D_u u D_rel (eq. 21), each explained by the C-LAM (eq. 22);
4. D_IoKD = D_demo u synthetic samples from the quality loop (eq. 23);
5. each sample gets its top-k contrastive vectors from D_h (eqs. 24, 25);
6. the result <p, s, C> (eq. 26) is written to ``<out>/iokd-<app>.jsonl``, and
   ``<out>/build.json`` records the configuration, the C-LAM, the counts of every step and
   round, and the sha256 of each file.

The ``heldout`` split never enters: D_h and D_u are ``train`` only, and
``dev_intents.jsonl`` is refused by :mod:`.data`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agentnet.intents import APPS
from llmkit.chat import ChatModel
from rapp_intent.iokd.augment import augment
from rapp_intent.iokd.config import BUILD_FILE, DATA_DIR, BuildConfig
from rapp_intent.iokd.contrastive import top_k_contrastive
from rapp_intent.iokd.cot import explain
from rapp_intent.iokd.data import Sample, history, read_jsonl, user_samples, write_jsonl
from rapp_intent.iokd.filtering import Embedder, filter_relevant
from servicekit.integrity import sha256_file


def dataset_path(app: str, directory: Path = DATA_DIR) -> Path:
    """File of one application's D_IoKD."""
    return Path(directory) / f"iokd-{app}.jsonl"


def build_dataset(
    samples: Sequence[Sample],
    apps: Sequence[str],
    clam: ChatModel,
    embed: Embedder,
    config: BuildConfig | None = None,
    out_dir: Path = DATA_DIR,
    progress: bool = False,
) -> dict[str, Any]:
    """Build and write D_IoKD for each application of ``apps``.

    Args:
        samples: the labelled intents (both splits; only ``train`` is used).
        apps: target applications.
        clam: the C-LAM (explains and augments).
        embed: SBERT embedder (filtering and the quality loop).
        config: construction parameters.
        out_dir: where the JSON Lines files and ``build.json`` go.
        progress: tqdm progress bars.

    Returns:
        The build report (also written to ``out_dir/build.json``).
    """
    config = config or BuildConfig()
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        raise ValueError(f"unknown applications {unknown}; expected some of {APPS}")
    start = time.perf_counter()
    d_h = history(samples)
    if any(s.split != "train" for s in d_h):
        raise AssertionError("D_h must hold train samples only")
    per_app: dict[str, dict[str, list[Sample]]] = {}
    report: dict[str, Any] = {"apps": {}}
    for app in apps:
        d_u = [s.with_(role="user", target_app=app) for s in user_samples(samples, app)]
        d_rel = [s.with_(target_app=app) for s in filter_relevant(d_u, d_h, embed, config.tau_min)]
        per_app[app] = {"user": d_u, "related": d_rel}
        report["apps"][app] = {"d_u": len(d_u), "d_rel": len(d_rel)}

    # Eq. 22 once per distinct demonstration (a related sample can serve several apps).
    distinct: dict[str, Sample] = {}
    for app in apps:
        for s in per_app[app]["user"] + per_app[app]["related"]:
            distinct.setdefault(s.id, s)
    explained, cot_report = explain(list(distinct.values()), clam, config.cot, progress)
    reason = {s.id: (s.reasoning, s.reasoning_by) for s in explained}
    report["cot"] = cot_report.to_json()

    out_dir = Path(out_dir)
    files = {}
    for app in apps:
        d_demo = [
            s.with_(reasoning=reason[s.id][0], reasoning_by=reason[s.id][1])
            for s in per_app[app]["user"] + per_app[app]["related"]
        ]  # eq. 21
        d_u = [s for s in d_demo if s.role == "user"]
        synthetic, aug_report = augment(
            app, d_u, d_demo, d_h, clam, embed, config.augment, progress
        )  # eq. 23
        d_iokd = top_k_contrastive(d_demo + synthetic, d_h, config.k)  # eqs. 24-26
        path = write_jsonl(dataset_path(app, out_dir), (s.to_json() for s in d_iokd))
        files[path.name] = sha256_file(path)
        report["apps"][app].update({"augmentation": aug_report.to_json(), "d_iokd": len(d_iokd)})
    report.update(
        {
            "clam": clam.name,
            "config": asdict(config),
            "data": "agentnet/data/intents/*.jsonl, split=train (D_h, D_u); heldout unused",
            "seconds": round(time.perf_counter() - start, 1),
            "files": files,
        }
    )
    (out_dir / BUILD_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def load_dataset(apps: Sequence[str], directory: Path = DATA_DIR) -> list[Sample]:
    """Read D_IoKD of the given applications (raises if one is missing or malformed)."""
    out: list[Sample] = []
    for app in apps:
        path = dataset_path(app, directory)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: build it with `rapp-intent iokd-dataset --app {app}`"
            )
        for lineno, obj in enumerate(read_jsonl(path), 1):
            sample = Sample.from_json(obj, f"{path}:{lineno}: ")
            if sample.split == "heldout":
                raise ValueError(f"{path}:{lineno}: a held-out sample in a training set")
            if not sample.contrastive:
                raise ValueError(f"{path}:{lineno}: sample without contrastive vectors")
            out.append(sample)
    return out
