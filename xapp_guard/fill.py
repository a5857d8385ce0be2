"""Template-constrained decoding with the offline SmolLM2: the model writes the values, the
template writes the JSON.

Asked for a scenario line freely, SmolLM2-135M returns a schema-valid JSON object for few
prompts (it drifts into code, prose or other keys). Here the structure is fixed and the
model only chooses what the structure leaves open, read from its own next-token
distribution after the prompt (the class line and the example list) and the text so far:

- a number: digits and at most one decimal point, one token at a time from the model's
  distribution restricted to numeric tokens, until the model's probability of a
  non-numeric token (the number ends) is drawn; at most ``max_number_tokens`` tokens;
- one of a few choices (``"pending"`` or ``"unknown"``): each choice's log-probability
  under the model, sampled at the temperature.

The JSON is assembled from the template and those values, so it always parses; whether
the values lie within the bounds, near the real data and away from the examples is left
to the quality checks, as for any other answer. A large model behind an OpenAI-compatible
endpoint writes freely (``decoding = free``).

Answers are memoised in a JSON Lines file keyed by the prompt, the template, the
temperature and the seed, so a rerun costs nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from llmkit.chat import Completion, Message
from llmkit.smollm2 import ensure_dequantised

log = structlog.get_logger("xapp_guard.fill")

_NUMERIC = re.compile(r"[0-9]+|[0-9]*\.[0-9]*")


@dataclass(frozen=True)
class Slot:
    """One piece of a template: literal ``text``, a ``number`` (``integer`` or not) or a
    ``choice`` among ``options`` (written as JSON strings)."""

    kind: str
    text: str = ""
    integer: bool = False
    options: tuple[str, ...] = ()
    key: str = ""


def text(s: str) -> Slot:
    return Slot("text", text=s)


def number(key: str, integer: bool) -> Slot:
    return Slot("number", integer=integer, key=key)


def choice(key: str, options: tuple[str, ...]) -> Slot:
    return Slot("choice", options=options, key=key)


class TemplateFiller:
    """SmolLM2 filling templates (see the module docstring).

    Args:
        cache_dir: where the dequantised model lives (``llmkit.smollm2``).
        memo: JSON Lines file of earlier answers (None: no memo).
        threads: torch threads (0: torch's default).
        seed: sampling seed (each prompt reseeds from it and its content).
        max_number_tokens: longest number, in tokens.
    """

    name = "local:SmolLM2-135M-Instruct, template-constrained"

    def __init__(self, cache_dir: Path, memo: Path | None = None, threads: int = 0,
                 seed: int = 0, max_number_tokens: int = 8):  # fmt: skip
        self.cache_dir = Path(cache_dir)
        self.memo_path = memo
        self.threads = threads
        self.seed = seed
        self.max_number_tokens = max_number_tokens
        self._model: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()
        self._memo: dict[str, str] = {}
        if memo is not None and Path(memo).exists():
            for line in Path(memo).read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._memo[row["key"]] = row["text"]
                except (ValueError, KeyError, TypeError):
                    log.warning("fill.memo_bad_line", path=str(memo))

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        folder = ensure_dequantised(self.cache_dir)
        self._tok = AutoTokenizer.from_pretrained(str(folder))
        self._model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        self._model.eval()
        vocab = self._tok.convert_ids_to_tokens(list(range(len(self._tok))))
        pieces = [self._tok.convert_tokens_to_string([t]) for t in vocab]
        self._numeric = [i for i, p in enumerate(pieces) if p and _NUMERIC.fullmatch(p)]
        self._has_dot = {i for i in self._numeric if "." in pieces[i]}
        self._digits = {i: sum(ch.isdigit() for ch in pieces[i]) for i in self._numeric}

    # ---- public -----------------------------------------------------------------------
    def fill(self, messages: list[Message], template: list[Slot], temperature: float) -> Completion:
        """The filled template as JSON text (memoised)."""
        key = hashlib.sha256(json.dumps(
            [self.name, messages, [s.__dict__ for s in template], temperature, self.seed],
            sort_keys=True).encode()).hexdigest()  # fmt: skip
        if key in self._memo:
            return Completion(self._memo[key])
        with self._lock:
            if self._model is None:
                self._load()
            out = self._fill(messages, template, temperature, key)
        self._memo[key] = out
        if self.memo_path is not None:
            self.memo_path.parent.mkdir(parents=True, exist_ok=True)
            with Path(self.memo_path).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "text": out}) + "\n")
        return Completion(out)

    # ---- decoding ---------------------------------------------------------------------
    def _fill(self, messages: list[Message], template: list[Slot], temperature: float,
              key: str) -> str:  # fmt: skip
        import torch

        gen = torch.Generator().manual_seed(self.seed + int(key[:8], 16))
        prompt = self._tok.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=True)  # fmt: skip
        state = _State(self._model, self._tok(prompt, add_special_tokens=False)["input_ids"])
        out: list[str] = []
        for slot in template:
            if slot.kind == "text":
                out.append(slot.text)
                state.feed(self._tok(slot.text, add_special_tokens=False)["input_ids"])
            elif slot.kind == "number":
                digits = self._number(state, temperature, gen)
                value = float(digits)
                out.append(str(round(value)) if slot.integer else f"{value:g}")
            else:
                out.append(json.dumps(self._choice(state, slot.options, temperature, gen)))
        return "".join(out)

    def _number(self, state: _State, temperature: float, gen) -> str:
        import torch

        written = ""
        for _ in range(self.max_number_tokens):
            probs = torch.softmax(state.logits / max(temperature, 1e-4), dim=-1)
            ids = [i for i in self._numeric
                   if not ("." in written and i in self._has_dot)
                   and not (not written and self._digits[i] == 0)]  # fmt: skip
            p_num = probs[ids]
            p_end = (1.0 - float(probs[self._numeric].sum())) if written.strip(".") else 0.0
            weights = torch.cat([p_num, torch.tensor([max(p_end, 0.0)])])
            if float(weights.sum()) <= 0:
                break
            pick = int(torch.multinomial(weights / weights.sum(), 1, generator=gen))
            if pick == len(ids):
                break
            token = ids[pick]
            written += self._tok.convert_tokens_to_string([self._tok.convert_ids_to_tokens(token)])
            state.feed([token])
        written = written.strip(".") or "0"
        return written if written[0] != "." else "0" + written

    def _choice(self, state: _State, options: tuple[str, ...], temperature: float, gen) -> str:
        import torch

        scores = []
        encoded = [self._tok(json.dumps(o), add_special_tokens=False)["input_ids"] for o in options]
        for ids in encoded:
            scores.append(state.score(ids))
        w = torch.softmax(torch.tensor(scores) / max(temperature, 1e-4), dim=0)
        pick = int(torch.multinomial(w, 1, generator=gen))
        state.feed(encoded[pick])
        return options[pick]


class _State:
    """A decoding position: the model's cache and its next-token logits."""

    def __init__(self, model: Any, prompt_ids: list[int]):
        self.model = model
        self.cache = None
        self.logits = None
        self.feed(prompt_ids)

    def feed(self, ids: list[int]) -> None:
        import torch

        if not ids:
            return
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids]), past_key_values=self.cache,
                             use_cache=True)  # fmt: skip
        self.cache = out.past_key_values
        self.logits = out.logits[0, -1].float()

    def score(self, ids: list[int]) -> float:
        """Log-probability of ``ids`` following the current position (state unchanged)."""
        import torch

        lp = float(torch.log_softmax(self.logits, -1)[ids[0]])
        if len(ids) > 1:
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([ids[:-1]]),
                                 past_key_values=copy.deepcopy(self.cache), use_cache=True)  # fmt: skip
            logp = torch.log_softmax(out.logits[0].float(), -1)
            lp += float(sum(logp[k, ids[k + 1]] for k in range(len(ids) - 1)))
        return lp
