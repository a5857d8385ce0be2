"""Export the detector to ONNX, with its model card, and check it against torch.

``<name>.onnx`` takes ``x`` ``(B, L, F)`` float32 raw window features (dynamic batch)
and gives ``logits`` ``(B, C)``. The card beside it (``<name>.card.json``) names the
classes, the features, the sequence length, the alert threshold, how the model was
trained and evaluated, and the file's sha256; the service refuses a file whose hash
differs. A model is trusted only after :func:`parity_check` (STYLE.md 6): onnxruntime
against torch on fresh random inputs of several batch sizes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from servicekit.integrity import sha256_file
from xapp_guard.features import NAMES
from xapp_guard.model import GuardCNN
from xapp_guard.scenarios import CLASSES

OPSET = 18


def export_onnx(model: GuardCNN, path: Path) -> Path:
    """Write the model to ``path`` (checked by ``onnx.checker``)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = torch.rand(2, model.cfg.length, len(NAMES)) * 10
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model,
        (x,),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: batch}},
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def random_inputs(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """Window-like inputs: mostly zeros, counts and byte sizes over several magnitudes."""
    x = rng.exponential(1.0, (batch, length, len(NAMES))) * 10.0 ** rng.integers(0, 6, (
        batch, length, len(NAMES)))  # fmt: skip
    x[rng.random(x.shape) < 0.5] = 0.0
    return x.astype(np.float32)


def parity_check(model: GuardCNN, path: Path, seed: int = 0) -> float:
    """Largest |onnxruntime - torch| logit difference over batches of 1, 7 and 64.

    Raises:
        AssertionError: a difference above 1e-4 (relative to the logits' scale).
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    model.eval()
    worst = 0.0
    for batch in (1, 7, 64):
        x = random_inputs(rng, batch, model.cfg.length)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(["logits"], {"x": x})[0]
        diff = float(np.abs(got - ref).max())
        scale = max(1.0, float(np.abs(ref).max()))
        assert diff <= 1e-4 * scale, f"ONNX parity: max |diff| {diff:.3g} at batch {batch}"
        worst = max(worst, diff)
    return worst


def write_card(path: Path, model: GuardCNN, info: dict[str, Any]) -> Path:
    """``<name>.card.json`` beside the ONNX file: classes, features, length, sha256 and
    ``info`` (training, evaluation, the alert threshold)."""
    path = Path(path)
    card = {
        "name": path.stem,
        "file": path.name,
        "sha256": sha256_file(path),
        "classes": list(CLASSES),
        "features": list(NAMES),
        "length": model.cfg.length,
        "model": {
            "hidden": model.cfg.hidden,
            "kernel": model.cfg.kernel,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        **info,
    }
    out = path.with_suffix(".card.json")
    out.write_text(json.dumps(card, indent=1))
    return out
