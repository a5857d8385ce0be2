"""The serving network state: rebuilt from a ``NetworkState`` and prepared for a policy.

A state arrives whole (a ``NetworkState``) or, for large networks, as a keyframe of its
fixed part and a delta of what the tick changed (:class:`~servicekit.statefeed.StateParts`,
reassembled by :class:`~servicekit.statefeed.StateFeed`). A :class:`LiveState` holds the network as the latest state describes it and, per tuple of
chain types, the policy's inputs with the GCN encoder already run
(:meth:`~xapp_composer.runtime.PolicyRuntime.prepare`), the exhaustive search space a
repair uses, and the action-space proposer's profile of the state
(:func:`~xapp_composer.proposer.profile_state`). Each is built once per state (on first
use, or ahead of the requests by :func:`build_state` and the control core), so that a
request only pays for its own decision; a new state is a new :class:`LiveState`, so
nothing computed on an older one is ever served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agentnet.network import Network
from agentnet.optimum import OptimumUnavailable, SearchSpace, build_search_space
from servicekit.statefeed import StateUpdate, update_network
from xapp_composer.proposer import StateProfile, profile_state
from xapp_composer.runtime import PolicyRuntime, Prepared

REPAIR_SEARCH_MAX = 200_000
"""Largest number of chains searched exhaustively for a repair (81 agents: about 8,000;
beyond the bound the greedy baseline repairs instead: the search's grids would cost
hundreds of MB and seconds on the request path)."""


@dataclass
class LiveState:
    """A network state prepared for one policy: the rebuilt network and, per chain-type
    tuple, the policy inputs with the GCN encoder already run.

    Attributes:
        seq: ``NetworkState.seq``.
        timestamp_ns: the state's wall-clock time (ns since the epoch; 0 if unknown).
        received: monotonic time at which the xApp received it.
        net: the network as the state describes it.
        runtime: the policy the inputs were prepared for.
    """

    seq: int
    timestamp_ns: int
    received: float
    net: Network
    runtime: PolicyRuntime
    prepared: dict[tuple[int, ...], Prepared] = field(default_factory=dict)
    spaces: dict[tuple[int, ...], SearchSpace | str] = field(default_factory=dict)
    profiles: dict[tuple[int, ...], StateProfile] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inputs(self, chain_types: tuple[int, ...]) -> Prepared:
        """Policy inputs for requests of these chain types (prepared on first use)."""
        with self._lock:
            p = self.prepared.get(chain_types)
            if p is None:
                p = self.runtime.prepare(self.net, chain_types)
                self.prepared[chain_types] = p
            return p

    def search_space(self, chain_types: tuple[int, ...]) -> SearchSpace | str:
        """Every chain of usable agents with its factors (built on first use, only for
        repairs), or why there is none to search (too many chains)."""
        with self._lock:
            space = self.spaces.get(chain_types)
            if space is None:
                sizes = [len(self.net.agents_of_type(t, usable=True)) for t in chain_types]
                size = int(np.prod(sizes, dtype=np.float64))
                if size > REPAIR_SEARCH_MAX:
                    space = f"{size:,} chains exceed the repair search bound"
                else:
                    try:
                        space = build_search_space(self.net, chain_types)
                    except OptimumUnavailable as exc:
                        space = str(exc)
                self.spaces[chain_types] = space
            return space

    def profile(self, chain_types: tuple[int, ...]) -> StateProfile:
        """The proposer's profile of this state for these chain types (computed once, on
        first use, from :meth:`inputs`; every request on the state reuses it)."""
        prep = self.inputs(chain_types)
        with self._lock:
            profile = self.profiles.get(chain_types)
            if profile is None:
                profile = profile_state(prep.state)
                self.profiles[chain_types] = profile
            return profile

    def for_runtime(self, runtime: PolicyRuntime) -> LiveState:
        """The same state prepared for another policy (same chain types, same search
        spaces: they do not depend on the policy; the proposer's profiles are computed
        again on the new inputs, whose route table they read)."""
        fresh = LiveState(
            seq=self.seq,
            timestamp_ns=self.timestamp_ns,
            received=self.received,
            net=self.net,
            runtime=runtime,
            spaces=dict(self.spaces),
        )
        for types in list(self.prepared):
            fresh.inputs(types)
        for types in list(self.profiles):
            fresh.profile(types)
        return fresh


def build_state(
    msg: StateUpdate,
    runtime: PolicyRuntime,
    chain_types: Sequence[tuple[int, ...]] = (),
    *,
    received: float | None = None,
    previous: LiveState | None = None,
) -> LiveState:
    """Rebuild and prepare a state (the expensive part of a state update).

    Args:
        msg: a decoded, validated state, whole or as parts.
        runtime: the policy to prepare for.
        chain_types: chain-type tuples to prepare now (others on first use).
        received: monotonic time of reception (default now).
        previous: the state this one follows: what did not change between the two is
            not prepared again (:meth:`~xapp_composer.runtime.PolicyRuntime.prepare`)
            when it was prepared for the same policy.

    Raises:
        codec.DecodeError: the state describes no possible network.
    """
    net = update_network(msg)
    live = LiveState(
        seq=int(msg.seq),
        timestamp_ns=int(msg.timestamp_ns),
        received=time.monotonic() if received is None else received,
        net=net,
        runtime=runtime,
    )
    before = previous.prepared if previous is not None and previous.runtime is runtime else {}
    for types in chain_types or (tuple(net.cfg.chain_types),):
        types = tuple(types)
        live.prepared[types] = runtime.prepare(net, types, previous=before.get(types))
    return live
