"""Test doubles for the IoKD tests: a scripted C-LAM and a bag-of-words embedder.

Both are deterministic and fast; the real SBERT and the real C-LAM backends have their
own tests (``test_iokd_construction.py::test_sbert_*``, ``test_iokd_clam.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import numpy as np

from llmkit.chat import Completion, Message
from rapp_intent.iokd.data import Sample


class ScriptedClam:
    """Answers each conversation with ``script(conversation)``; records every call."""

    name = "scripted"

    def __init__(self, script: Callable[[Sequence[Message]], str | None]):
        self.script = script
        self.calls: list[list[Message]] = []

    def chat(self, conversations, *, max_tokens, temperature):
        out = []
        for conv in conversations:
            self.calls.append(list(conv))
            text = self.script(conv)
            out.append(Completion(text) if text is not None else Completion(None, "down"))
        return out


def bow_embed(texts: Sequence[str], dim: int = 512) -> np.ndarray:
    """Unit-norm hashed bag of lower-case words: cosine = word overlap."""
    out = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9']+", text.lower()):
            h = int(hashlib.md5(word.encode()).hexdigest(), 16)
            out[i, h % dim] += 1.0
        norm = np.linalg.norm(out[i])
        out[i] = out[i] / norm if norm else out[i]
        if not norm:
            out[i, 0] = 1.0
    return out


def sample(
    id: str,
    prompt: str,
    s: Sequence[float],
    app: str = "qa",
    split: str = "train",
    **kw,
) -> Sample:
    """A labelled sample."""
    return Sample(id=id, prompt=prompt, s=tuple(s), app=app, split=split, **kw)


def last_user(conv: Sequence[Message]) -> str:
    """Content of the last user turn."""
    return next(m["content"] for m in reversed(conv) if m["role"] == "user")
