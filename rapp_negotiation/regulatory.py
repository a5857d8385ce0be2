"""The regulatory unit: retrieval over the project's rules, and the constraints they set.

The corpus (``data/regulations.json``, written by the project) holds rules as a regulator
would publish them: a cap on λ per network class, a fairness floor, a suspension rule, a
conduct rule, and rules on other topics. The unit embeds every rule once with MiniLM and
answers a negotiation topic with the rules nearest to it in meaning (retrieval-augmented
generation, maestro section III-3): their text goes into the LLM's prompt, and the
constraints of the ones that apply (same topic, same network class) bound the negotiated
value: r_min and r_max of NEGOTIATION.md.

Network classes are by size: ``compact`` (fewer than 50 agents), ``standard`` (50 to 150)
and ``large`` (more than 150).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CORPUS_PATH = Path(__file__).resolve().parent / "data" / "regulations.json"
TOPIC = "admitted_rate"
"""The topic the negotiation service negotiates."""


class SentenceEncoder(Protocol):
    """What the unit needs from an embedding model (:class:`~rapp_negotiation.embedding.MiniLM`)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""
        ...


def network_class(n_agents: int) -> str:
    """``compact`` (< 50 agents), ``standard`` (50-150) or ``large`` (> 150)."""
    if n_agents < 50:
        return "compact"
    return "standard" if n_agents <= 150 else "large"


def topic_query(topic: str, n_agents: int) -> str:
    """The retrieval query of a topic on a network of ``n_agents`` agents."""
    if topic == TOPIC:
        return (
            f"admitted arrival rate per chain on a {network_class(n_agents)} agentic network "
            f"of {n_agents} agents: capacity headroom, fairness floor, suspension of admission, "
            "conduct of tenants"
        )
    return topic.replace("_", " ")


@dataclass(frozen=True)
class Rule:
    """One rule of the corpus."""

    id: str
    title: str
    text: str
    topic: str
    network_class: str | None = None
    constraint: dict[str, Any] = field(default_factory=dict)

    def applies(self, topic: str, cls: str) -> bool:
        """True when the rule constrains ``topic`` on a network of class ``cls``."""
        return self.topic == topic and self.network_class in (None, cls)


def load_rules(path: Path = CORPUS_PATH) -> tuple[Rule, ...]:
    """Read a corpus file (``{"rules": [...]}``).

    Raises:
        ValueError: a rule without id, title, text or topic, or a duplicate id.
    """
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    rules = []
    for i, row in enumerate(obj.get("rules", [])):
        missing = [k for k in ("id", "title", "text", "topic") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}: rules[{i}] lacks {missing}")
        rules.append(
            Rule(row["id"], row["title"], row["text"], row["topic"], row.get("network_class"),
                 dict(row.get("constraint", {})))
        )  # fmt: skip
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate rule ids")
    return tuple(rules)


@dataclass(frozen=True)
class Constraints:
    """What the regulatory unit returns for a topic.

    Attributes:
        r_min: lowest admissible value (requests/s per chain).
        r_max: highest admissible value (+∞ when no rule caps it).
        text: the retrieved rules, as given to the LLM.
        rules: ids of the retrieved rules, best first.
        applied: ids of the rules whose constraints set r_min and r_max.
        suspension_allowed: r_min is 0 because suspension is allowed now.
    """

    r_min: float
    r_max: float
    text: str
    rules: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    suspension_allowed: bool = False

    def bounds_text(self) -> str:
        """``[r_min, r_max]`` for a prompt."""
        hi = "no upper bound" if math.isinf(self.r_max) else f"{self.r_max:.3g}"
        return f"[{self.r_min:.3g}, {hi}]"


UNBOUNDED = Constraints(0.0, math.inf, "")
"""No rule: r_min = 0, r_max = +∞ (NEGOTIATION.md's default)."""


class Regulatory:
    """Retrieval over a rule corpus (module docstring).

    Args:
        encoder: sentence embeddings (MiniLM).
        rules: the corpus (default: the packaged one).
        top_k: rules retrieved per topic.
        min_similarity: a rule less similar than this to the query is not retrieved.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        rules: Sequence[Rule] | None = None,
        top_k: int = 6,
        min_similarity: float = 0.3,
    ):
        self.encoder = encoder
        self.rules = tuple(load_rules() if rules is None else rules)
        if not self.rules:
            raise ValueError("the regulatory corpus is empty")
        self.top_k = top_k
        self.min_similarity = min_similarity
        self._embeddings: np.ndarray | None = None
        self._cache: dict[str, list[tuple[Rule, float]]] = {}

    def _corpus(self) -> np.ndarray:
        if self._embeddings is None:
            self._embeddings = self.encoder.encode([f"{r.title}. {r.text}" for r in self.rules])
        return self._embeddings

    def retrieve(self, query: str, k: int | None = None) -> list[tuple[Rule, float]]:
        """The rules nearest to ``query`` (cosine similarity), best first."""
        k = self.top_k if k is None else k
        key = f"{k}\0{query}"
        if key not in self._cache:
            q = self.encoder.encode([query])[0]
            sims = self._corpus() @ q
            order = np.argsort(-sims, kind="stable")[:k]
            self._cache[key] = [
                (self.rules[i], float(sims[i])) for i in order if sims[i] >= self.min_similarity
            ]
        return self._cache[key]

    def constraints(
        self,
        capacity: float,
        n_agents: int,
        targets: Sequence[float] = (),
        topic: str = TOPIC,
    ) -> Constraints:
        """The constraints of ``topic`` on a network of ``n_agents`` agents at λ_cap.

        Args:
            capacity: λ_cap; the rules' shares are of it.
            n_agents: the network's size (its class picks the headroom rule).
            targets: the tenants' targets; all zero is a unanimous call for suspension.
            topic: the negotiated topic.
        """
        hits = self.retrieve(topic_query(topic, n_agents))
        cls = network_class(n_agents)
        r_min, r_max, applied = 0.0, math.inf, []
        unanimous = bool(targets) and all(t == 0 for t in targets)
        suspension_allowed = False
        for rule, _ in hits:
            if not rule.applies(topic, cls):
                continue
            c = rule.constraint
            if "r_max_share" in c:
                r_max = min(r_max, float(c["r_max_share"]) * capacity)
                applied.append(rule.id)
            if "r_min_share" in c:
                r_min = max(r_min, float(c["r_min_share"]) * capacity)
                applied.append(rule.id)
            if c.get("suspension") == "unanimous" and (unanimous or capacity <= 0):
                suspension_allowed = True
                applied.append(rule.id)
        if suspension_allowed:
            r_min = 0.0
        r_min = min(r_min, r_max)
        # Rules on the topic for another network class were retrieved but do not apply.
        shown = [r for r, _ in hits if r.topic != topic or r.applies(topic, cls)]
        text = "\n".join(f"{r.id} ({r.title}): {r.text}" for r in shown)
        return Constraints(
            r_min, r_max, text, tuple(r.id for r, _ in hits), tuple(applied), suspension_allowed
        )
