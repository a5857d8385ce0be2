"""``local`` chat backend: SmolLM2-135M-Instruct, offline, on torch.

Be clear about what this is: a 135 M-parameter model; every feature that uses it runs
unchanged with a large model through the ``openai`` backend (:mod:`llmkit.chat`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from llmkit.chat import ChatModel, Completion, Message
from llmkit.smollm2 import load_model


class LocalChat(ChatModel):
    """SmolLM2-135M-Instruct, offline (see the module docstring for its limits).

    Generation is batched and shares the key/value cache of the conversations' common
    prefix (the system message of a pipeline step, with the rubric): it is computed once
    and every row only pays for its own tokens. Rows are padded between the prefix and
    their own tokens, with the attention mask and position ids set accordingly.

    Args:
        cache_dir: cache root of derived model files (the dequantised model lives in
            ``smollm2/``).
        batch_size: conversations decoded together.
        threads: torch intra-op threads (0: leave torch's default).
        seed: sampling seed; each batch reseeds from it and the batch's content.
        top_p: nucleus of the sampling distribution.
    """

    def __init__(
        self,
        cache_dir: Path,
        batch_size: int = 16,
        threads: int = 0,
        seed: int = 0,
        top_p: float = 0.95,
    ):
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.threads = threads
        self.seed = seed
        self.top_p = top_p
        self.name = "local:SmolLM2-135M-Instruct"
        self._model = None
        self._tokenizer = None
        self._prefixes: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self._model, self._tokenizer = load_model(self.cache_dir)
        stops = {self._tokenizer.convert_tokens_to_ids("<|im_end|>")}
        if isinstance(self._tokenizer.eos_token_id, int):
            stops.add(self._tokenizer.eos_token_id)
        self._stops = stops

    def _answer(
        self, conversations: list[Sequence[Message]], max_tokens: int, temperature: float
    ) -> list[Completion]:
        """Batched generation, sampling when temperature > 0."""
        with self._lock:
            if self._model is None:
                self._load()
            texts = [
                self._tokenizer.apply_chat_template(
                    list(c), tokenize=False, add_generation_prompt=True
                )
                for c in conversations
            ]
            ids = [list(self._tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            out: list[Completion | None] = [None] * len(ids)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                answers = self._generate([ids[i] for i in idx], max_tokens, temperature)
                for i, answer in zip(idx, answers, strict=True):
                    out[i] = Completion(answer.strip())
        return out  # type: ignore[return-value]

    def _prefix_cache(self, prefix: tuple[int, ...]):
        if prefix not in self._prefixes:
            if len(self._prefixes) >= 8:
                self._prefixes.pop(next(iter(self._prefixes)))
            with torch.inference_mode():
                out = self._model(input_ids=torch.tensor([prefix]), use_cache=True)
            self._prefixes[prefix] = out.past_key_values
        return self._prefixes[prefix]

    def _generate(self, rows: list[list[int]], max_tokens: int, temperature: float) -> list[str]:
        n_prefix = 0
        shortest = min(len(r) for r in rows)
        while n_prefix < shortest - 1 and all(r[n_prefix] == rows[0][n_prefix] for r in rows):
            n_prefix += 1
        digest = hashlib.sha256(json.dumps(rows).encode()).digest()
        gen = torch.Generator().manual_seed(self.seed + int.from_bytes(digest[:4], "little"))
        batch = len(rows)
        suffixes = [r[n_prefix:] for r in rows]
        width = max(len(s) for s in suffixes)
        pad = self._tokenizer.pad_token_id or 0
        inp = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes])
        row_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])
        mask = torch.cat([torch.ones(batch, n_prefix, dtype=torch.long), row_mask], dim=1)
        pos = (n_prefix + row_mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        if n_prefix:
            cache = copy.deepcopy(self._prefix_cache(tuple(rows[0][:n_prefix])))
            cache.batch_repeat_interleave(batch)
        generated: list[list[int]] = [[] for _ in range(batch)]
        done = torch.zeros(batch, dtype=torch.bool)
        with torch.inference_mode():
            out = self._model(
                input_ids=inp,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )
            last = pos[:, -1:]
            for _ in range(max_tokens):
                token = self._sample(out.logits[:, -1].float(), temperature, gen)
                for i in range(batch):
                    if not done[i]:
                        if int(token[i]) in self._stops:
                            done[i] = True
                        else:
                            generated[i].append(int(token[i]))
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], dim=1)
                last = last + 1
                out = self._model(
                    input_ids=token[:, None],
                    attention_mask=mask,
                    position_ids=last,
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
        return self._tokenizer.batch_decode(generated, skip_special_tokens=True)

    def _sample(self, logits, temperature: float, gen):
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < self.top_p
        sorted_p = sorted_p * keep
        choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=gen)
        return sorted_i.gather(-1, choice)[:, 0]
