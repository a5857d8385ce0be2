"""Following a network's state from the bus: whole states, or keyframes and deltas.

The emulator publishes each state on ``lameta/v1/<network>/state``: a whole
``NetworkState`` for small networks, or, above ``SIM_STATE_FULL_MAX_AGENTS``, a delta
(``StateChunk`` of body ``DELTA``) that refers to a keyframe published once, in chunks, on
``…/state/keyframe/<i>`` (retained; wire format in ``proto/lameta_proto/v1/network.proto``,
codec in :mod:`servicekit.codec`). Every reader of the state (the xApp, the negotiation
rApp, the demo's observer) follows both topics through one :class:`StateFeed`:

- keyframe chunks go to :meth:`StateFeed.on_keyframe_chunk`, which holds the latest
  complete keyframe;
- state payloads go to :meth:`StateFeed.on_state`, which returns the whole state, or the
  delta with its keyframe as :class:`StateParts`.

A delta whose keyframe the feed does not hold (topics are not ordered: retained messages
of two topics arrive in any order after a subscription, and a keyframe changes after the
emulator reconnects) is counted and logged, never taken for a wrong message type. The
newest such delta is kept, older ones are dropped, and when its keyframe completes the
feed resynchronises on it: :meth:`StateFeed.on_keyframe_chunk` returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agentnet.config import DEFAULT, ModelConfig
from agentnet.network import Network
from lameta_proto.v1 import network_pb2
from servicekit import codec

log = structlog.get_logger("servicekit.statefeed")

StateCounter = Callable[[str], None]
"""Called with the name of each event a feed counts (module docstring of the names)."""


@dataclass(frozen=True)
class StateParts:
    """A large network's state: its keyframe (with its id) and one delta of it."""

    keyframe: network_pb2.StateKeyframe
    keyframe_id: int
    delta: network_pb2.StateDelta

    @property
    def seq(self) -> int:
        """The delta's ``seq``."""
        return int(self.delta.seq)

    @property
    def timestamp_ns(self) -> int:
        """The delta's wall-clock time."""
        return int(self.delta.timestamp_ns)

    @property
    def arrival_rate(self) -> float:
        """The delta's λ (requests/s per chain)."""
        return float(self.delta.arrival_rate)

    def network(self, cfg: ModelConfig = DEFAULT) -> Network:
        """The network the two describe.

        Raises:
            codec.DecodeError: they do not fit together or describe no possible network.
        """
        return codec.network_from_parts(self.keyframe, self.keyframe_id, self.delta, cfg)

    def arrays(self) -> codec.StateArrays:
        """The state as arrays (:func:`codec.arrays_from_parts`).

        Raises:
            codec.DecodeError: the delta does not fit the keyframe.
        """
        return codec.arrays_from_parts(self.keyframe, self.keyframe_id, self.delta)


StateUpdate = network_pb2.NetworkState | StateParts
"""A state as a feed returns it: whole, or a keyframe and one of its deltas."""


def update_network(update: StateUpdate, cfg: ModelConfig = DEFAULT) -> Network:
    """The network a state describes, whole or in parts.

    Raises:
        codec.DecodeError: it describes no possible network.
    """
    if isinstance(update, StateParts):
        return update.network(cfg)
    return codec.network_from_state(update, cfg)


def update_arrays(update: StateUpdate) -> codec.StateArrays:
    """The arrays of a state, whole or in parts.

    Raises:
        codec.DecodeError: the parts do not fit together.
    """
    if isinstance(update, StateParts):
        return update.arrays()
    return codec.StateArrays.from_proto(update)


def _ignore(event: str) -> None:
    return None


class StateFeed:
    """The state of one network as its topics carry it (module docstring).

    Not thread-safe: call it from one thread (the reader's state loop).

    Args:
        count: called with each event the feed counts: ``keyframe`` (one completed and
            held), ``awaiting_keyframe`` (a delta whose keyframe is not held; kept until
            it is), ``dropped_no_keyframe`` (such a delta replaced by a newer one before
            its keyframe came).
        keep: keyframe ids whose chunks are assembled at once
            (:class:`codec.KeyframeAssembler`).
    """

    def __init__(self, count: StateCounter = _ignore, keep: int = 2):
        self.count = count
        self.assembler = codec.KeyframeAssembler(keep)
        self.keyframe: tuple[network_pb2.StateKeyframe, int] | None = None
        """The latest complete keyframe, with its id."""
        self.waiting: network_pb2.StateDelta | None = None
        """The newest delta whose keyframe is not held yet."""

    def on_state(self, payload: bytes) -> StateUpdate | None:
        """A state payload: the whole state, or a delta with its keyframe; None for a delta
        whose keyframe is not held (counted, logged, kept until it is).

        Raises:
            codec.DecodeError: neither a valid whole state nor a valid delta.
        """
        env = codec.parse_envelope(payload)
        if env.WhichOneof("payload") != "state_chunk":
            return codec.decode_state(payload)
        delta = codec.decode_delta(codec.decode_chunk(payload))
        if self.keyframe is not None and self.keyframe[1] == delta.keyframe_id:
            return StateParts(*self.keyframe, delta)
        if self.waiting is not None:
            self.count("dropped_no_keyframe")
        self.waiting = delta
        self.count("awaiting_keyframe")
        held = None if self.keyframe is None else f"{self.keyframe[1]:016x}"
        log.info("state_delta_without_keyframe", seq=int(delta.seq), held=held,
                 keyframe_id=f"{delta.keyframe_id:016x}")  # fmt: skip
        return None

    def on_keyframe_chunk(self, payload: bytes) -> StateParts | None:
        """A keyframe chunk (an empty payload, a cleared retained topic, is ignored). Once
        it completes a keyframe, that keyframe is held from then on.

        Returns:
            The delta that waited for this keyframe, with it (the feed resynchronises on
            it), or None.

        Raises:
            codec.DecodeError: a malformed chunk, or a keyframe that its chunks do not
                assemble into.
        """
        if not payload:
            return None
        chunk = codec.decode_chunk(payload)
        if self.keyframe is not None and chunk.keyframe_id == self.keyframe[1]:
            return None  # the keyframe held (published again after a reconnect)
        done = self.assembler.add(chunk)
        if done is None:
            return None
        key, key_id = done
        self.keyframe = done
        self.count("keyframe")
        log.info("keyframe_installed", keyframe_id=f"{key_id:016x}", agents=len(key.types))
        waiting, self.waiting = self.waiting, None
        if waiting is None:
            return None
        if waiting.keyframe_id != key_id:
            self.count("dropped_no_keyframe")
            return None
        return StateParts(key, key_id, waiting)


__all__ = ["StateCounter", "StateFeed", "StateParts", "StateUpdate", "update_arrays",
           "update_network"]  # fmt: skip
