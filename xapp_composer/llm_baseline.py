"""LLM zero-shot baseline (paper sec. VI-C): a language model asked for the chain.

The model gets the system description, the user's request and a table of candidate
agents per step (capability, latency, outage rate, and route BER to the next step's best
link), and must answer with one agent id per step. It runs on a chat model of
:mod:`llmkit.chat` (``local``: SmolLM2-135M-Instruct offline; ``openai``: any
OpenAI-compatible endpoint, settings ``XAPP_LLM_*``). An answer that is not a valid chain
counts as a failed decision (scored as an infeasible chain). The fee is that of the model
that understood the intent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from agentnet.config import elam_fee
from agentnet.intents import APPS
from agentnet.network import Network
from llmkit.chat import ChatSettings, make_chat
from llmkit.smollm2 import PARAMETERS as SMOLLM2_PARAMETERS

MAX_CANDIDATES = 8
"""Candidates listed per step (the best by capability, latency and outage, in turn), to keep
the prompt within a small model's context."""

SYSTEM = (
    "You compose service chains in an agentic network. A request needs one agent of type 1, "
    "then one of type 2, then one of type 3. Each agent has a capability (higher is better), "
    "a latency in seconds and an outage rate (lower is better); messages between consecutive "
    "agents can be corrupted (BER, lower is better). Pick the chain that best fits what the "
    "user cares about. Answer with the three agent ids only, like: 12, 45, 7"
)

ChatFn = Callable[[list[dict[str, str]]], str]


class BaselineLlmSettings(ChatSettings):
    """The baseline's chat model (environment prefix ``XAPP_LLM_``)."""

    model_config = SettingsConfigDict(env_prefix="XAPP_LLM_", env_file=".env", extra="ignore")


def shortlist(net: Network, step_type: int, k: int = MAX_CANDIDATES) -> np.ndarray:
    """Up to k usable agents of a type, taking the best by each factor in turn."""
    cand = net.agents_of_type(step_type, usable=True)
    lat = net.agent_latency()[cand]
    orders = [np.argsort(-net.p_success[cand]), np.argsort(lat), np.argsort(net.outage_rate[cand])]
    picked: list[int] = []
    for rank in range(len(cand)):
        for order in orders:
            a = int(cand[order[rank]])
            if a not in picked:
                picked.append(a)
            if len(picked) == k:
                return np.array(picked)
    return np.array(picked)


def build_prompt(
    net: Network, prompt: str, app: str
) -> tuple[list[dict[str, str]], list[np.ndarray]]:
    """Chat messages for one request, and the candidates listed per step."""
    lat = net.agent_latency()
    lines = []
    lists = []
    types = net.cfg.chain_types
    for k, t in enumerate(types):
        cand = shortlist(net, t)
        lists.append(cand)
        lines.append(f"Type {t} candidates:")
        nxt = shortlist(net, types[k + 1]) if k + 1 < len(types) else None
        for a in cand:
            extra = ""
            if nxt is not None and len(nxt):
                extra = f", best BER to next {net.route_ber_from(int(a))[nxt].min():.1e}"
            lines.append(
                f"  agent {a}: capability {net.p_success[a]:.2f}, latency {lat[a]:.2f} s, "
                f"outage {net.outage_rate[a]:.3f}{extra}"
            )
    user = f"Application: {app}\nRequest: {prompt}\n" + "\n".join(lines) + "\nChain:"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}], lists


def parse_chain(text: str, net: Network) -> tuple[int, ...] | None:
    """The first n integers of the answer, if they form a chain of the right types."""
    ids = [int(x) for x in re.findall(r"\d+", text)]
    n = len(net.cfg.chain_types)
    if len(ids) < n:
        return None
    chain = tuple(ids[:n])
    for a, t in zip(chain, net.cfg.chain_types, strict=True):
        if not (0 <= a < net.n_agents and net.types[a] == t and net.available[a]):
            return None
    return chain


MAX_TOKENS = 24
"""Enough for three agent ids and separators."""


def run_llm(
    ev,
    pairs: Sequence[int],
    *,
    backend: str = "local",
    chat: ChatFn | None = None,
    progress: bool = False,
) -> tuple[list, list, dict[str, float]]:
    """Ask the C-LAM for each pair's chain. Returns (chains, elam labels, fee table).

    Args:
        ev: the evaluation set (networks and requests).
        pairs: indices of the (network, request) pairs to decide.
        backend: ``local`` (SmolLM2-135M-Instruct offline) or ``openai`` (settings from
            ``XAPP_LLM_*``); ignored when ``chat`` is given.
        chat: one conversation in, the answer's text out (tests, custom models).
        progress: a progress bar over the batches.

    A failed call or an answer that is not a valid chain gives ``None`` (an infeasible
    decision when scored).
    """
    conversations = []
    for p in pairs:
        net = ev.nets[ev.net_idx[p]]
        r = int(ev.req_idx[p])
        messages, _ = build_prompt(net, ev.requests.prompts[r], APPS[int(ev.requests.app[r])])
        conversations.append(messages)
    if chat is not None:
        texts: list[str | None] = [chat(m) for m in conversations]
        label, fee = "llm", 0.0
    else:
        clam = make_chat(BaselineLlmSettings(backend=backend))
        texts = []
        step = max(1, int(getattr(clam, "batch_size", 8)))
        batches = range(0, len(conversations), step)
        if progress:
            batches = tqdm(batches, desc="LLM zero-shot", unit="batch")
        for i in batches:
            answers = clam.chat(conversations[i : i + step], max_tokens=MAX_TOKENS, temperature=0.0)
            texts.extend(a.text if a.ok else None for a in answers)
        label = f"llm:{clam.name}"
        n_params = SMOLLM2_PARAMETERS if backend == "local" else 0
        fee = elam_fee(float(n_params))
    chains = [
        parse_chain(text, ev.nets[ev.net_idx[p]]) if text else None
        for p, text in zip(pairs, texts, strict=True)
    ]
    return chains, [label] * len(chains), {label: fee}
