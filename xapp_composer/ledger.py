"""Which requests have been decided: exactly-once decisions over at-least-once delivery.

Requests arrive with QoS 1, so a request can come twice (a redelivery after a reconnect,
or a retry of the emulator). :class:`DecisionLedger` remembers the request ids whose
decision was handed to the broker (bounded, the oldest forgotten first), and holds a
request id while one decider thread decides and publishes it, so that a redelivery
arriving meanwhile on another thread waits and then finds it decided.

Decisions are kept serialised: a ``bytes`` value is not tracked by the cyclic garbage
collector, so the ledger, up to its capacity of decisions, adds nothing to the objects a
full collection pass scans (:mod:`servicekit.heap`); a message object per decision adds
two tracked objects, and a full pass over 100,000 of them takes about 18 ms (3 ms
serialised), paid on the request path. A decision is parsed again only when asked for
(an outcome, a redelivery): about 1.5 us.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from lameta_proto.v1 import network_pb2


@dataclass(frozen=True)
class Decided:
    """What is remembered of a published decision: the message itself, so that it can be
    published again when its request is announced again (a broker that restarted without
    persistence lost it), and an outcome can be matched against it."""

    decision: network_pb2.ControlDecision

    @property
    def fallback(self) -> bool:
        return self.decision.fallback

    @property
    def elam(self) -> str:
        return self.decision.elam

    @property
    def rejected(self) -> bool:
        return bool(self.decision.rejection)

    def matches(self, outcome: network_pb2.Outcome) -> bool:
        """The outcome is of this very decision: same chain and same predicted vector."""
        d = self.decision
        return list(outcome.chain) == list(d.chain) and list(outcome.predicted) == list(d.predicted)


class DecisionLedger:
    """Decided request ids, and the ids being decided right now.

    Args:
        capacity: decided request ids remembered.
    """

    def __init__(self, capacity: int = 100_000):
        self.capacity = int(capacity)
        self._decided: OrderedDict[str, bytes] = OrderedDict()
        self._decided_lock = threading.Lock()
        self._claims: dict[str, threading.Event] = {}
        self._claims_lock = threading.Lock()

    def get(self, request_id: str) -> Decided | None:
        """What was published for a request id (None: nothing, or forgotten)."""
        with self._decided_lock:
            data = self._decided.get(request_id)
        if data is None:
            return None
        decision = network_pb2.ControlDecision()
        decision.ParseFromString(data)
        return Decided(decision)

    def record(self, request_id: str, decision: network_pb2.ControlDecision) -> None:
        """Remember ``decision`` as published for ``request_id``."""
        data = decision.SerializeToString()
        with self._decided_lock:
            self._decided[request_id] = data
            self._decided.move_to_end(request_id)
            while len(self._decided) > self.capacity:
                self._decided.popitem(last=False)

    def forget(self, request_id: str) -> bool:
        """Undo :meth:`record`; False when there was nothing to forget."""
        with self._decided_lock:
            return self._decided.pop(request_id, None) is not None

    @contextlib.contextmanager
    def claim(self, request_id: str) -> Iterator[None]:
        """Hold a request id while it is decided and published: a redelivery of it that
        arrives meanwhile (another decider thread) waits, then finds it decided. An empty
        id is not held (such a request cannot be answered, so it cannot be duplicated)."""
        if not request_id:
            yield
            return
        with self._claims_lock:
            while (busy := self._claims.get(request_id)) is not None:
                self._claims_lock.release()
                try:
                    busy.wait()
                finally:
                    self._claims_lock.acquire()
            self._claims[request_id] = threading.Event()
        try:
            yield
        finally:
            with self._claims_lock:
                self._claims.pop(request_id).set()
