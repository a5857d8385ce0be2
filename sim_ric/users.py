"""Simulated users: labelled intents (INTENTS.md format) turned into service requests.

The user's TRUE vector stays inside the emulator: a published request carries the prompt
and the application only; the true vector is kept to score the decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agentnet.intents import LabelledIntent


class UserPool:
    """Draws simulated users (prompt, app, hidden true vector) from labelled intents.

    Args:
        intents: the labelled intents.
        rng: random source.
    """

    def __init__(self, intents: Sequence[LabelledIntent], rng: np.random.Generator):
        if not intents:
            raise ValueError("the user pool needs at least one labelled intent")
        self.intents = list(intents)
        self.rng = rng

    def draw(self) -> LabelledIntent:
        """One user, uniformly at random."""
        return self.intents[int(self.rng.integers(len(self.intents)))]
