"""The detector: a small 1-D CNN over a client's last few windows.

The paper's case study (Generative AI-in-the-loop, Sec. "Case study") classifies traffic
with a CNN; here the convolution runs over time, across a short sequence of one client's
feature windows, so that a burst is judged against what the client did just before.

The input scaling lives inside the network (buffers set from the training data), so the
exported ONNX graph takes raw features and the service needs nothing else.

Shapes:
    x: ``(B, L, F)`` raw window features (:data:`xapp_guard.features.NAMES`), the last
    row the window being classified; output ``logits`` ``(B, C)`` over
    :data:`xapp_guard.scenarios.CLASSES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from xapp_guard.features import N_FEATURES
from xapp_guard.scenarios import CLASSES


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`GuardCNN`."""

    length: int = field(default=8, metadata={"help": "windows per sequence"})
    hidden: int = field(default=32, metadata={"help": "channels of the convolutions"})
    kernel: int = field(default=3, metadata={"help": "temporal kernel size"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the classifier"})


class GuardCNN(nn.Module):
    """``log1p`` and standardisation, two temporal convolutions, last-step and max-over-time
    pooling, a linear classifier.

    Args:
        cfg: the architecture.
        n_features: F.
        n_classes: C.
    """

    def __init__(
        self, cfg: ModelConfig, n_features: int = N_FEATURES, n_classes: int = len(CLASSES)
    ):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        pad = cfg.kernel // 2
        self.conv1 = nn.Conv1d(n_features, cfg.hidden, cfg.kernel, padding=pad)
        self.conv2 = nn.Conv1d(cfg.hidden, cfg.hidden, cfg.kernel, padding=pad)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.conv1, self.conv2, self.head):
            m.reset_parameters()

    def set_scaling(self, x: np.ndarray) -> None:
        """Set the input scaling from training sequences ``(n, L, F)`` (their log1p)."""
        z = np.log1p(np.maximum(x.reshape(-1, x.shape[-1]), 0.0))
        std = z.std(0)
        self.mean.copy_(torch.as_tensor(z.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (torch.log1p(torch.clamp(x, min=0.0)) - self.mean) / self.std
        h = z.transpose(1, 2)  # (B, F, L)
        h = torch.relu(self.conv1(h))
        h = torch.relu(self.conv2(h))
        pooled = torch.cat([h[:, :, -1], h.amax(dim=2)], dim=1)
        return self.head(self.drop(pooled))
