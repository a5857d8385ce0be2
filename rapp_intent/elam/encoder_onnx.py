"""The ``minilm`` encoder exported to ONNX and run by onnxruntime on the CPU.

The export (torch.export-based, dynamic batch and length) is made once per base weights
and adapter, cached, and checked for parity against torch before use.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog
import torch

from rapp_intent.elam.batch_plan import encode_planned
from rapp_intent.elam.encoder import MAX_TOKENS
from rapp_intent.elam.encoder_torch import TorchEncoder
from servicekit.integrity import sha256_file

log = structlog.get_logger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """all-MiniLM-L6-v2 exported to ONNX and run by onnxruntime (CPU provider).

    Args:
        cache_dir: where the exported model is kept (file name carries the source hash,
            and the adapter's when there is one).
        threads: intra-op threads of onnxruntime (0: its default, one per core).
        path: model folder (default: the packaged one).
        adapter: a LoRA adapter merged before export (see :class:`TorchEncoder`).
        warm_lengths: :meth:`warmup` runs one prompt of every token count up to this
            (0: none).
    """

    def __init__(
        self,
        cache_dir: Path,
        threads: int = 0,
        path: Path | None = None,
        adapter: Path | None = None,
        warm_lengths: int = 0,
    ):
        self._torch = TorchEncoder(path, adapter=adapter)
        self.cache_dir, self.threads = Path(cache_dir), threads
        self.warm_lengths = warm_lengths
        self.adapter, self.adapter_sha = self._torch.adapter, self._torch.adapter_sha
        self.backend = "onnx"
        self.n_parameters = self._torch.n_parameters
        self.tokenizer = self._torch.tokenizer
        source = self._torch.path / "model.safetensors"
        tag = sha256_file(source)[:16] if source.exists() else "unknown"
        if self.adapter_sha:
            tag += f"-lora-{self.adapter_sha[:16]}"
        onnx_path = Path(cache_dir) / "minilm" / f"encoder-{tag}.onnx"
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # onnxruntime's pool threads spin after each run by default; beside the other
        # services on a shared CPU that spinning takes the cores they need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        if onnx_path.exists():
            try:
                self.session = ort.InferenceSession(
                    str(onnx_path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # a damaged cache file: rebuild it once
                log.warning("minilm.onnx_invalid", path=str(onnx_path), error=str(exc))
                onnx_path.unlink()
        if not onnx_path.exists():
            export_onnx(self._torch, onnx_path)
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        self.onnx_path = onnx_path
        err = self.parity_error()
        if err > 1e-4:
            raise RuntimeError(
                f"ONNX encoder {onnx_path} disagrees with torch (max abs error {err:.3g}); "
                "delete it to re-export or use minilm_backend=torch"
            )

    def with_adapter(self, adapter: Path) -> OnnxEncoder:
        """The same runtime with a LoRA adapter merged (exported once, then cached)."""
        return OnnxEncoder(
            self.cache_dir, self.threads, self._torch.path, adapter, self.warm_lengths
        )

    def warmup(self) -> list[tuple[int, int]]:
        """Run one prompt of each token count from 2 to ``warm_lengths`` once.

        A single new prompt runs unpadded, so its shape is (1, its token count).
        onnxruntime plans its memory per input shape on the first run of that shape
        (measured: about 0.1 ms more than a later run of a 5 ms pass); this moves those
        first runs before the service reports ready. The outputs do not depend on it.

        Returns:
            The shapes run.
        """
        shapes = [(1, n) for n in range(2, min(self.warm_lengths, MAX_TOKENS) + 1)]
        pad = self.tokenizer.pad_token_id or 0
        for rows, length in shapes:
            self._forward(
                np.full((rows, length), pad, dtype=np.int64), np.ones((rows, length), np.int64)
            )
        return shapes

    def parity_error(self, texts: Sequence[str] | None = None) -> float:
        """Largest absolute difference between ONNX and torch embeddings on ``texts``."""
        texts = list(
            texts
            or [
                "render the scene for my headset, no lag",
                "hi",
                "Write a technical report on packet loss in 5G fronthaul links with figures.",
            ]
        )
        return float(np.abs(self.encode(texts) - self._torch.encode(texts)).max())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (see :class:`Encoder`)."""
        return encode_planned(self.tokenizer, texts, self._forward, quantise=False)

    def concurrent(self, n_texts: int) -> bool:
        """True: onnxruntime sessions run safely from several threads at once."""
        return True

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)


def export_onnx(encoder: TorchEncoder, onnx_path: Path) -> Path:
    """Export the pooled encoder to ONNX (dynamic batch and length), atomically.

    Uses the torch.export-based exporter: the legacy TorchScript tracer bakes the
    attention-mask handling of recent transformers into constants and breaks parity.
    """
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("minilm.onnx_export", path=str(onnx_path))
    sample = encoder.tokenize(["hello world", "a longer sentence to pad the other one"])
    batch = torch.export.Dim("batch")
    length = torch.export.Dim("length", max=MAX_TOKENS)
    shapes = {k: {0: batch, 1: length} for k in _INPUTS}
    tmp = onnx_path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    # The exporter reports progress on stdout, which belongs to the CLI's JSON output.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder.module,
            tuple(sample[k] for k in _INPUTS),
            str(tmp),
            input_names=list(_INPUTS),
            output_names=["sentence_embedding"],
            dynamic_shapes=shapes,
            opset_version=18,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    tmp.replace(onnx_path)
    return onnx_path
