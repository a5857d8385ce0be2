"""The observability unit: capacity and load from the emulator's state, and when to negotiate.

Every state (``lameta/v1/<network>/state``: a whole state, or for large networks a delta
with the keyframe it refers to, reassembled by :class:`servicekit.statefeed.StateFeed`)
is rebuilt into a network and searched for its capacity λ_cap
(:func:`agentnet.capacity.capacity`: bisection to a relative 1e-4 on the largest λ at
which the exact optimum chain for the even vector stays feasible). The load is the
state's arrival rate λ.

Triggers (maestro section III-4: "negotiations adapt or halt if the topic is no longer
valid"):

- ``first_state``: no negotiation yet;
- ``capacity_moved``: λ_cap moved by more than ``threshold`` (relative) from the λ_cap the
  standing consensus was negotiated at;
- ``capacity_restored``: λ_cap rose above 0 after a halt;
- ``no_capacity``: λ_cap is 0; the topic is no longer valid and any running negotiation
  halts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentnet.capacity import capacity
from agentnet.config import DEFAULT, ModelConfig
from servicekit.statefeed import StateUpdate, update_network


@dataclass(frozen=True)
class Observation:
    """What the unit learned from one state.

    Attributes:
        seq: the state's sequence number.
        timestamp_ns: the state's wall-clock time.
        capacity: λ_cap (requests/s per chain).
        load: the state's λ (requests/s per chain).
        n_agents: N.
        available: agents available.
        chain: the even vector's optimum chain at λ_cap.
    """

    seq: int
    timestamp_ns: int
    capacity: float
    load: float
    n_agents: int
    available: int
    chain: tuple[int, ...]

    @property
    def utilisation(self) -> float:
        """load / λ_cap (+∞ when λ_cap is 0)."""
        return self.load / self.capacity if self.capacity > 0 else math.inf


def observe(update: StateUpdate, cfg: ModelConfig = DEFAULT, rel_tol: float = 1e-4) -> Observation:
    """The capacity of a decoded state, whole or in parts.

    Raises:
        servicekit.codec.DecodeError: the state describes no possible network (a delta
            that does not fit its keyframe, a field no network can have).
    """
    net = update_network(update, cfg)
    cap = capacity(net, rel_tol)
    return Observation(
        seq=int(update.seq),
        timestamp_ns=int(update.timestamp_ns),
        capacity=cap.lambda_cap,
        load=float(update.arrival_rate),
        n_agents=net.n_agents,
        available=int(net.available.sum()),
        chain=cap.chain,
    )


class Trigger:
    """Decides when the observed capacity calls for a (new) negotiation.

    Args:
        threshold: relative change of λ_cap that re-triggers a negotiation.
    """

    def __init__(self, threshold: float = 0.1):
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.threshold = threshold
        self.reference: float | None = None
        """λ_cap the standing consensus was negotiated at (None: never negotiated)."""
        self.halted = False

    def check(self, obs: Observation) -> str | None:
        """The trigger reason for this observation, or None (module docstring)."""
        if obs.capacity <= 0:
            return None if self.halted else "no_capacity"
        if self.halted:
            return "capacity_restored"
        if self.reference is None:
            return "first_state"
        if self.moved(obs.capacity):
            return "capacity_moved"
        return None

    def moved(self, capacity_now: float) -> bool:
        """True when λ_cap moved by more than the threshold from the reference."""
        ref = self.reference
        if ref is None or ref <= 0:
            return True
        return abs(capacity_now - ref) > self.threshold * ref

    def negotiated(self, capacity_at: float) -> None:
        """A negotiation concluded at this λ_cap."""
        self.reference = capacity_at
        self.halted = False

    def halt(self) -> None:
        """The topic became invalid (λ_cap = 0)."""
        self.halted = True
        self.reference = None
