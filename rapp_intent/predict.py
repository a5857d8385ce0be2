"""``rapp-intent predict``: the E-LAMs' predictions of labelled intents, into the files
SRL training and evaluation read (:mod:`agentnet.predictions`).

The E-LAMs translate in-process, with the code the gRPC service runs and without the
in-context memory. Only prompts a file does not hold yet are translated, in batches of
:data:`BATCH` in the given order, and the file is saved after each batch (an interrupted
run resumes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from agentnet.intents import LabelledIntent
from agentnet.predictions import MISSING, PredictionFile
from rapp_intent.elam.base import MemoryContext
from rapp_intent.elam.registry import load_elam
from rapp_intent.settings import RappSettings

BATCH = 32


def write_predictions(
    elam_ids: Sequence[str],
    intents: Sequence[LabelledIntent],
    out_dir: Path,
    settings: RappSettings,
    *,
    progress: bool = False,
) -> dict[str, dict]:
    """Bring ``out_dir/<elam>.json`` up to date for ``intents``, for each E-LAM.

    Returns:
        Per E-LAM: the file, its artefact and variant, how many prompts were translated
        now and how many translations failed (all of ``intents``).
    """
    summary = {}
    for eid in elam_ids:
        elam = load_elam(eid, settings)
        store = PredictionFile(
            Path(out_dir) / f"{eid}.json",
            eid,
            str(elam.artefact),
            elam.variant,
            float(elam.n_parameters),
        )
        todo = [i for i, it in enumerate(intents) if store.get(it.prompt, it.app) == MISSING]
        starts = range(0, len(todo), BATCH)
        if progress:
            starts = tqdm(starts, desc=f"translate {eid}", unit="batch")
        for start in starts:
            chunk = [intents[i] for i in todo[start : start + BATCH]]
            results = elam.translate(
                [c.prompt for c in chunk], [MemoryContext(app=c.app) for c in chunk]
            )
            for c, r in zip(chunk, results, strict=True):
                store.put(c.prompt, c.app, r.vector if r.ok else None)
            store.save()
        if not todo:
            store.save()
        failed = sum(store.get(it.prompt, it.app) is None for it in intents)
        summary[eid] = {
            "file": str(store.path),
            "artefact": store.artefact,
            "variant": store.variant,
            "n_parameters": store.n_parameters,
            "translated": len(todo),
            "failed": failed,
        }
    return summary
