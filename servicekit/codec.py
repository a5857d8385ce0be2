"""Protobuf codec of the MQTT payloads (``lameta.v1``, ARCHITECTURE.md "Interfaces").

Every payload on the wire is an :class:`~lameta_proto.v1.network_pb2.Envelope` with
``schema = 1`` and one of ``state``, ``request``, ``decision``, ``outcome`` or ``policy``
set. This
module turns emulator objects into those messages and bytes back into messages, with a
:class:`DecodeError` that says why a payload was refused (garbage bytes, a message of
the wrong type, a missing or invalid field). :func:`to_json` renders any of them as JSON
for debugging (``google.protobuf.json_format``; infinities and NaNs become the strings
``"Infinity"`` and ``"NaN"``).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from google.protobuf.message import Message

from agentnet.config import DEFAULT, ModelConfig
from agentnet.network import Network
from agentnet.qoe import agent_latency
from lameta_proto.v1 import network_pb2

SCHEMA = 1
"""Envelope schema version written and accepted by this codec."""
MAX_STATE_BODY_BYTES = 256 * 1024 * 1024
"""Largest keyframe or delta body accepted, compressed or not (a 100,000-agent keyframe
is about 8 MB): bounds what a forged chunk header or a zlib bomb can make a receiver
allocate."""

NetworkState = network_pb2.NetworkState
ServiceRequest = network_pb2.ServiceRequest
ControlDecision = network_pb2.ControlDecision
Outcome = network_pb2.Outcome
Policy = network_pb2.Policy
StateChunk = network_pb2.StateChunk
StateKeyframe = network_pb2.StateKeyframe
StateDelta = network_pb2.StateDelta
Envelope = network_pb2.Envelope

Payload = NetworkState | ServiceRequest | ControlDecision | Outcome | Policy | StateChunk
P = TypeVar("P", NetworkState, ServiceRequest, ControlDecision, Outcome, Policy, StateChunk)

_FIELD_OF: dict[type, str] = {
    NetworkState: "state",
    ServiceRequest: "request",
    ControlDecision: "decision",
    Outcome: "outcome",
    Policy: "policy",
    StateChunk: "state_chunk",
}
_KIND_NAME = {
    "state": "network state",
    "request": "service request",
    "decision": "control decision",
    "outcome": "outcome",
    "policy": "policy",
    "state_chunk": "state chunk",
}


class DecodeError(ValueError):
    """A payload could not be accepted.

    Attributes:
        code: short machine-readable cause: ``"garbage"``, ``"unsupported_schema"``,
            ``"wrong_message_type"``, ``"missing_field"`` or ``"invalid_field"``.
        reason: a human-readable explanation (also the exception message).
        message: the decoded payload when the envelope itself was fine but the payload
            failed validation (lets a receiver say which request a bad decision was for).
    """

    def __init__(self, code: str, reason: str, message: Message | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.message = message


# --------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------
def wrap(msg: Payload) -> network_pb2.Envelope:
    """Put a payload message into a schema-1 envelope."""
    try:
        field = _FIELD_OF[type(msg)]
    except KeyError:
        raise TypeError(f"not a lameta.v1 payload message: {type(msg).__name__}") from None
    env = Envelope(schema=SCHEMA)
    getattr(env, field).CopyFrom(msg)
    return env


def encode(msg: Payload) -> bytes:
    """Serialise a payload message, wrapped in its envelope."""
    return wrap(msg).SerializeToString()


def parse_envelope(data: bytes | bytearray | memoryview) -> network_pb2.Envelope:
    """Parse and check an envelope (schema and presence of a payload).

    Raises:
        DecodeError: garbage bytes, an unsupported schema or an empty envelope.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("garbage", f"payload must be bytes, got {type(data).__name__}")
    env = Envelope()
    try:
        env.ParseFromString(bytes(data))
    except _ProtobufDecodeError as exc:
        raise DecodeError(
            "garbage", f"garbage bytes: not a protobuf Envelope ({len(data)} bytes; {exc})"
        ) from None
    kind = env.WhichOneof("payload")
    if env.schema == 0 and kind is None:
        raise DecodeError(
            "garbage",
            f"garbage bytes: not a lameta.v1 Envelope ({len(data)} bytes, no schema, no payload)",
        )
    if env.schema != SCHEMA:
        raise DecodeError(
            "unsupported_schema", f"unsupported envelope schema {env.schema} (expected {SCHEMA})"
        )
    if kind is None:
        raise DecodeError("missing_field", "envelope carries no payload")
    return env


def decode(data: bytes | bytearray | memoryview) -> Payload:
    """Decode any payload and validate it.

    Raises:
        DecodeError: with the reason.
    """
    env = parse_envelope(data)
    kind = env.WhichOneof("payload")
    msg = getattr(env, kind)
    _validate(kind, msg)
    return msg


def _validate(kind: str, msg: Message) -> None:
    try:
        _VALIDATORS[kind](msg)
    except DecodeError as exc:
        exc.message = msg
        raise


def decode_as(data: bytes | bytearray | memoryview, expected: type[P]) -> P:
    """Decode a payload that must be of type ``expected``.

    Raises:
        DecodeError: garbage, wrong message type (e.g. a state on the control topic) or an
            invalid message.
    """
    want = _FIELD_OF[expected]
    env = parse_envelope(data)
    kind = env.WhichOneof("payload")
    if kind != want:
        raise DecodeError(
            "wrong_message_type",
            f"wrong message type: expected a {_KIND_NAME[want]}, got a {_KIND_NAME[kind]}",
        )
    msg = getattr(env, kind)
    _validate(kind, msg)
    return msg


def decode_state(data: bytes | bytearray | memoryview) -> network_pb2.NetworkState:
    """Decode a :class:`NetworkState` payload (see :func:`decode_as`)."""
    return decode_as(data, NetworkState)


def decode_request(data: bytes | bytearray | memoryview) -> network_pb2.ServiceRequest:
    """Decode a :class:`ServiceRequest` payload (see :func:`decode_as`)."""
    return decode_as(data, ServiceRequest)


def decode_decision(data: bytes | bytearray | memoryview) -> network_pb2.ControlDecision:
    """Decode a :class:`ControlDecision` payload (see :func:`decode_as`)."""
    return decode_as(data, ControlDecision)


def decode_outcome(data: bytes | bytearray | memoryview) -> network_pb2.Outcome:
    """Decode an :class:`Outcome` payload (see :func:`decode_as`)."""
    return decode_as(data, Outcome)


def decode_policy(data: bytes | bytearray | memoryview) -> network_pb2.Policy:
    """Decode a :class:`Policy` payload (see :func:`decode_as`)."""
    return decode_as(data, Policy)


def decode_chunk(data: bytes | bytearray | memoryview) -> network_pb2.StateChunk:
    """Decode a :class:`StateChunk` payload (see :func:`decode_as`)."""
    return decode_as(data, StateChunk)


# --------------------------------------------------------------------------------------
# Validation of decoded messages (structure only; the emulator checks semantics)
# --------------------------------------------------------------------------------------
def _missing(what: str) -> DecodeError:
    return DecodeError("missing_field", f"missing field: {what}")


def _invalid(what: str) -> DecodeError:
    return DecodeError("invalid_field", f"invalid field: {what}")


def _validate_state(m: network_pb2.NetworkState) -> None:
    if not m.network:
        raise _missing("state.network")
    n = len(m.agents)
    if n == 0:
        raise _missing("state.agents")
    for i, a in enumerate(m.agents):
        if a.id != i:
            raise _invalid(f"state.agents[{i}].id is {a.id}; agents must be listed by id 0..N-1")
        if a.type < 1:
            raise _invalid(f"state.agents[{i}].type is {a.type}; types are 1-based")
    for j, link in enumerate(m.links):
        if not (link.u < n and link.v < n) or link.u == link.v:
            raise _invalid(f"state.links[{j}] joins {link.u} and {link.v} (N = {n})")
        if not 0.0 <= link.ber <= 1.0:
            raise _invalid(f"state.links[{j}].ber is {link.ber}, outside [0, 1]")
    if not (math.isfinite(m.arrival_rate) and m.arrival_rate > 0):
        raise _invalid(f"state.arrival_rate is {m.arrival_rate}; it must be positive")


def _validate_request(m: network_pb2.ServiceRequest) -> None:
    if not m.request_id:
        raise _missing("request.request_id")
    if not m.prompt:
        raise _missing("request.prompt")
    if not m.chain_types:
        raise _missing("request.chain_types")


def _validate_decision(m: network_pb2.ControlDecision) -> None:
    if not m.request_id:
        raise _missing("decision.request_id")
    if not m.rejection and not m.chain:
        raise _missing("decision.chain (or a rejection)")


def _validate_outcome(m: network_pb2.Outcome) -> None:
    if not m.code:
        raise _missing("outcome.code")


def _validate_policy(m: network_pb2.Policy) -> None:
    if not m.network:
        raise _missing("policy.network")
    if not m.negotiation_id:
        raise _missing("policy.negotiation_id")
    if not (math.isfinite(m.arrival_rate) and m.arrival_rate >= 0):
        raise _invalid(f"policy.arrival_rate is {m.arrival_rate}; it must be finite and >= 0")
    if m.valid_until_ns < 0:
        raise _invalid(f"policy.valid_until_ns is {m.valid_until_ns}; it must be >= 0")
    if not (math.isfinite(m.capacity) and m.capacity >= 0):
        raise _invalid(f"policy.capacity is {m.capacity}; it must be finite and >= 0")


def _validate_chunk(m: network_pb2.StateChunk) -> None:
    if not m.network:
        raise _missing("state_chunk.network")
    if m.body not in (StateChunk.KEYFRAME, StateChunk.DELTA):
        raise _invalid(f"state_chunk.body is {m.body}; expected KEYFRAME or DELTA")
    if m.count < 1 or m.index >= m.count:
        raise _invalid(f"state_chunk.index {m.index} of count {m.count}")
    if m.body == StateChunk.DELTA and m.count != 1:
        raise _invalid(f"state_chunk: a delta is one chunk, not {m.count}")
    if not 0 < m.size <= MAX_STATE_BODY_BYTES:
        raise _invalid(f"state_chunk.size is {m.size}; must lie in [1, {MAX_STATE_BODY_BYTES}]")
    if not m.data or m.offset + len(m.data) > m.size:
        raise _invalid(
            f"state_chunk.data: {len(m.data)} bytes at offset {m.offset} of a {m.size}-byte body"
        )
    if m.count == 1 and len(m.data) != m.size:
        raise _invalid(f"state_chunk.data: {len(m.data)} bytes of a one-chunk {m.size}-byte body")


_VALIDATORS = {
    "state": _validate_state,
    "request": _validate_request,
    "decision": _validate_decision,
    "outcome": _validate_outcome,
    "policy": _validate_policy,
    "state_chunk": _validate_chunk,
}


# --------------------------------------------------------------------------------------
# Emulator objects -> messages
# --------------------------------------------------------------------------------------
def state_message(
    net: Network, *, network: str, seq: int, timestamp_ns: int
) -> network_pb2.NetworkState:
    """The :class:`NetworkState` of a network: node features of eq. 33b plus type and
    availability, and the edge feature E[BER] of every link of G (eq. 33c).

    Args:
        net: the network in its current state.
        network: the network's name (the ``<network>`` of the topics).
        seq: sequence number of this state (increases by one per tick).
        timestamp_ns: wall-clock time of the state, ns since the epoch.

    Returns:
        The message. An agent's latency L_i (eq. 7) is ``+inf`` when rho_i >= 1.
    """
    msg = NetworkState(
        network=network,
        seq=seq,
        timestamp_ns=timestamp_ns,
        arrival_rate=net.arrival_rate,
        c_th=net.cfg.c_th,
        l_max=net.cfg.l_max,
        topology_seed=net.seed,
    )
    latency = net.agent_latency()
    columns = zip(
        net.types.tolist(),
        net.tiers(),
        net.x.tolist(),
        net.y.tolist(),
        net.p_success.tolist(),
        latency.tolist(),
        net.observations.tolist(),
        net.failures.tolist(),
        net.available.tolist(),
        net.mu.tolist(),
        net.cv.tolist(),
        net.compute.tolist(),
        net.n_params.tolist(),
        strict=True,
    )
    add_agent = msg.agents.add
    for i, (t, tier, x, y, p, lat, obs, fail, up, mu, cv, comp, npar) in enumerate(columns):
        add_agent(
            id=i,
            type=t,
            tier=tier,
            x=x,
            y=y,
            capability=p,
            latency=lat,
            observations=obs,
            failures=fail,
            available=up,
            mu=mu,
            cv=cv,
            compute_flops=comp,
            n_params=npar,
        )
    add_link = msg.links.add
    for (u, v), ber in zip(net.edges.tolist(), net.link_ber.tolist(), strict=True):
        add_link(u=u, v=v, ber=ber)
    return msg


@dataclass(frozen=True)
class StateArrays:
    """A decoded :class:`NetworkState` as numpy arrays (what a policy consumes).

    Per-agent arrays have shape (N,), ``edges`` shape (E, 2) and ``ber`` shape (E,).
    """

    network: str
    seq: int
    timestamp_ns: int
    arrival_rate: float
    c_th: float
    l_max: float
    topology_seed: int
    types: np.ndarray
    cloud: np.ndarray
    x: np.ndarray
    y: np.ndarray
    capability: np.ndarray
    latency: np.ndarray
    observations: np.ndarray
    failures: np.ndarray
    available: np.ndarray
    mu: np.ndarray
    cv: np.ndarray
    compute_flops: np.ndarray
    n_params: np.ndarray
    edges: np.ndarray
    ber: np.ndarray

    @property
    def n_agents(self) -> int:
        """N."""
        return len(self.types)

    @property
    def outage_rate(self) -> np.ndarray:
        """|F_i| / |O_i| (eq. 9)."""
        return self.failures / np.maximum(self.observations, 1.0)

    def usable(self, service_type: int) -> np.ndarray:
        """Ids of available agents of a type with a finite latency (rho_i < 1)."""
        mask = (self.types == service_type) & self.available & np.isfinite(self.latency)
        return np.flatnonzero(mask)

    @classmethod
    def from_proto(cls, m: network_pb2.NetworkState) -> StateArrays:
        """Build the arrays from a (validated) message."""
        agents = m.agents

        def col(name: str, dtype=float) -> np.ndarray:
            return np.fromiter((getattr(a, name) for a in agents), dtype=dtype, count=len(agents))

        edges = np.array([(link.u, link.v) for link in m.links], dtype=np.int64).reshape(-1, 2)
        return cls(
            network=m.network,
            seq=m.seq,
            timestamp_ns=m.timestamp_ns,
            arrival_rate=m.arrival_rate,
            c_th=m.c_th,
            l_max=m.l_max,
            topology_seed=m.topology_seed,
            types=col("type", np.int64),
            cloud=np.array([a.tier == "cloud" for a in agents], dtype=bool),
            x=col("x"),
            y=col("y"),
            capability=col("capability"),
            latency=col("latency"),
            observations=col("observations"),
            failures=col("failures"),
            available=col("available", bool),
            mu=col("mu"),
            cv=col("cv"),
            compute_flops=col("compute_flops"),
            n_params=col("n_params"),
            edges=edges,
            ber=np.fromiter((link.ber for link in m.links), dtype=float, count=len(m.links)),
        )


def network_from_state(m: network_pb2.NetworkState, cfg: ModelConfig = DEFAULT) -> Network:
    """Rebuild a :class:`~agentnet.network.Network` from a (validated) state message: the
    inverse of :func:`state_message`, as a policy on the far side of MQTT needs it.

    What the message does not carry is derived: the hardware speed h_i from mu_i
    (MODEL.md: E[S_i] = t0 (N_OP,i / 1e9)^gamma / h_i), link lengths from the positions,
    and the links' E[BER] is set as observed (no shadowing model on this side). C_th and
    L_max come from the message.

    Args:
        m: the state message (run it through :func:`decode_state` first).
        cfg: model constants the message does not carry (t0, gamma, ...).

    Raises:
        DecodeError: ``invalid_field`` for values no network can have (a non-positive
            service rate or observation count, a capability outside (0, 1], more
            failures than observations, a link E[BER] of 1).
    """
    return network_from_arrays(StateArrays.from_proto(m), cfg, m)


def network_from_arrays(
    a: StateArrays, cfg: ModelConfig = DEFAULT, message: Message | None = None
) -> Network:
    """The :class:`~agentnet.network.Network` of decoded state arrays (see
    :func:`network_from_state`, which this serves, as does :func:`network_from_parts`).

    Args:
        message: the message the arrays came from, attached to a :class:`DecodeError`.

    Raises:
        DecodeError: ``invalid_field`` for values no network can have.
    """
    m = message

    def bad(what: str, mask: np.ndarray) -> None:
        if np.any(mask):
            i = int(np.flatnonzero(mask)[0])
            raise DecodeError("invalid_field", f"invalid field: state.agents[{i}].{what}", m)

    bad("mu (must be positive and finite)", ~(np.isfinite(a.mu) & (a.mu > 0)))
    bad("cv (must be finite, >= 0)", ~(np.isfinite(a.cv) & (a.cv >= 0)))
    bad("capability (must lie in (0, 1])", ~((a.capability > 0) & (a.capability <= 1)))
    bad("observations (must be positive)", ~(np.isfinite(a.observations) & (a.observations > 0)))
    bad(
        "failures (must lie in [0, observations])",
        ~((a.failures >= 0) & (a.failures <= a.observations)),
    )
    bad("n_params (must be positive)", ~(np.isfinite(a.n_params) & (a.n_params > 0)))
    if np.any(a.ber >= 1.0):
        j = int(np.flatnonzero(a.ber >= 1.0)[0])
        raise DecodeError("invalid_field", f"invalid field: state.links[{j}].ber is 1", m)
    over = {}
    if a.c_th > 0 and math.isfinite(a.c_th):
        over["c_th"] = a.c_th
    if a.l_max > 0 and math.isfinite(a.l_max):
        over["l_max"] = a.l_max
    net_cfg = replace(cfg, n_agents=a.n_agents, **over)
    points = np.stack([a.x, a.y], axis=1)
    length = (
        np.linalg.norm(points[a.edges[:, 0]] - points[a.edges[:, 1]], axis=1)
        if len(a.edges)
        else np.zeros(0)
    )
    speed = a.mu * cfg.t0 * np.power(a.n_params / 1e9, cfg.gamma)
    net = Network(
        cfg=net_cfg,
        seed=int(a.topology_seed),
        types=a.types,
        cloud=a.cloud,
        x=a.x,
        y=a.y,
        compute=a.compute_flops,
        speed=speed,
        n_params=a.n_params,
        p_success=a.capability,
        mu=a.mu,
        cv=a.cv,
        observations=a.observations,
        failures=a.failures,
        available=a.available,
        edges=a.edges,
        length=length,
        ref_length=float(np.median(length)) if len(length) else 1.0,
        shadowing_db=np.zeros(len(a.edges)),
        arrival_rate=a.arrival_rate,
    )
    net.set_link_ber(a.ber)
    return net


# --------------------------------------------------------------------------------------
# Large states: a keyframe (fixed part, chunked) and per-tick deltas
# --------------------------------------------------------------------------------------
def keyframe_id(body: bytes) -> int:
    """The id of a serialised :class:`StateKeyframe` body: its sha256's first 8 bytes."""
    return int.from_bytes(hashlib.sha256(body).digest()[:8], "big")


def keyframe_message(net: Network, *, network: str) -> network_pb2.StateKeyframe:
    """The fixed part of a network's state (what no tick of the emulator changes)."""
    return StateKeyframe(
        network=network,
        topology_seed=net.seed,
        types=net.types.tolist(),
        cloud=net.cloud.tolist(),
        x=net.x.tolist(),
        y=net.y.tolist(),
        capability=net.p_success.tolist(),
        mu=net.mu.tolist(),
        cv=net.cv.tolist(),
        compute_flops=net.compute.tolist(),
        n_params=net.n_params.tolist(),
        link_u=net.edges[:, 0].tolist(),
        link_v=net.edges[:, 1].tolist(),
    )


def delta_message(
    net: Network, *, network: str, seq: int, timestamp_ns: int, keyframe: int
) -> network_pb2.StateDelta:
    """What a tick changes in a network's state, for keyframe id ``keyframe``."""
    return StateDelta(
        network=network,
        seq=seq,
        timestamp_ns=timestamp_ns,
        keyframe_id=keyframe,
        arrival_rate=net.arrival_rate,
        c_th=net.cfg.c_th,
        l_max=net.cfg.l_max,
        observations=net.observations.tolist(),
        failures=net.failures.tolist(),
        available=net.available.tolist(),
        link_ber=net.link_ber.tolist(),
    )


def keyframe_chunks(
    key: network_pb2.StateKeyframe, chunk_bytes: int
) -> list[network_pb2.StateChunk]:
    """A keyframe as chunks of at most ``chunk_bytes`` bytes of compressed body each."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    body = key.SerializeToString()
    packed = zlib.compress(body, 1)
    count = max(1, math.ceil(len(packed) / chunk_bytes))
    kid = keyframe_id(body)
    return [
        StateChunk(
            network=key.network,
            body=StateChunk.KEYFRAME,
            keyframe_id=kid,
            index=i,
            count=count,
            size=len(packed),
            offset=i * chunk_bytes,
            data=packed[i * chunk_bytes : (i + 1) * chunk_bytes],
        )
        for i in range(count)
    ]


def delta_chunk(delta: network_pb2.StateDelta) -> network_pb2.StateChunk:
    """A delta as its one chunk."""
    packed = zlib.compress(delta.SerializeToString(), 1)
    return StateChunk(
        network=delta.network,
        body=StateChunk.DELTA,
        keyframe_id=delta.keyframe_id,
        seq=delta.seq,
        index=0,
        count=1,
        size=len(packed),
        data=packed,
    )


def _inflate(packed: bytes, what: str) -> bytes:
    d = zlib.decompressobj()
    try:
        body = d.decompress(packed, MAX_STATE_BODY_BYTES)
    except zlib.error as exc:
        raise DecodeError("garbage", f"{what}: not zlib data ({exc})") from None
    if d.unconsumed_tail:
        raise DecodeError("invalid_field", f"{what}: inflates beyond {MAX_STATE_BODY_BYTES} bytes")
    if not d.eof:
        raise DecodeError("invalid_field", f"{what}: truncated zlib stream")
    return body


def _parse(cls: type[Message], body: bytes, what: str) -> Message:
    msg = cls()
    try:
        msg.ParseFromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError("garbage", f"{what}: not a {cls.__name__} ({exc})") from None
    return msg


def decode_delta(chunk: network_pb2.StateChunk) -> network_pb2.StateDelta:
    """The validated delta a (validated) DELTA chunk carries.

    Raises:
        DecodeError: not a delta, bad compression or contents, or a header that does not
            match the body.
    """
    if chunk.body != StateChunk.DELTA:
        raise DecodeError("wrong_message_type", "wrong message type: expected a state delta")
    d = _parse(StateDelta, _inflate(chunk.data, "state delta"), "state delta")
    if d.network != chunk.network or d.keyframe_id != chunk.keyframe_id or d.seq != chunk.seq:
        raise _invalid("state delta: network, keyframe_id or seq differ from its chunk's")
    n = len(d.observations)
    if n == 0:
        raise _missing("delta.observations")
    if len(d.failures) != n or len(d.available) != n:
        raise _invalid(
            f"delta: {n} observations, {len(d.failures)} failures, {len(d.available)} available"
        )
    if not (math.isfinite(d.arrival_rate) and d.arrival_rate > 0):
        raise _invalid(f"delta.arrival_rate is {d.arrival_rate}; it must be positive")
    ber = np.asarray(d.link_ber, dtype=float)
    if not np.all((ber >= 0.0) & (ber <= 1.0)):
        j = int(np.flatnonzero(~((ber >= 0.0) & (ber <= 1.0)))[0])
        raise _invalid(f"delta.link_ber[{j}] is {ber[j]}, outside [0, 1]")
    return d


class KeyframeAssembler:
    """Collects keyframe chunks and yields each keyframe once all of its chunks arrived.

    Chunks of at most ``keep`` keyframe ids are held (the oldest is dropped when a newer
    id starts), so a stream of forged or stale chunks cannot grow memory beyond ``keep``
    bodies of :data:`MAX_STATE_BODY_BYTES`.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._parts: dict[int, dict[int, network_pb2.StateChunk]] = {}

    def add(self, chunk: network_pb2.StateChunk) -> tuple[network_pb2.StateKeyframe, int] | None:
        """Take a (validated) KEYFRAME chunk; the validated keyframe and its id when it
        completes one.

        Raises:
            DecodeError: a chunk that contradicts the ones held for its id, or a complete
                keyframe whose body is not the one its id names or is invalid.
        """
        if chunk.body != StateChunk.KEYFRAME:
            raise DecodeError("wrong_message_type", "wrong message type: expected a keyframe")
        kid = chunk.keyframe_id
        parts = self._parts.get(kid)
        if parts is None:
            parts = self._parts[kid] = {}
            while len(self._parts) > self.keep:
                del self._parts[next(iter(self._parts))]
        first = next(iter(parts.values()), None)
        if first is not None and (first.count, first.size, first.network) != (
            chunk.count,
            chunk.size,
            chunk.network,
        ):
            del self._parts[kid]
            raise _invalid(f"keyframe {kid:016x}: chunks disagree on count, size or network")
        parts[chunk.index] = chunk
        if len(parts) < chunk.count:
            return None
        del self._parts[kid]
        ordered = [parts[i] for i in range(chunk.count)]
        if any(c.offset != sum(len(p.data) for p in ordered[:i]) for i, c in enumerate(ordered)):
            raise _invalid(f"keyframe {kid:016x}: chunk offsets do not tile the body")
        packed = b"".join(c.data for c in ordered)
        if len(packed) != chunk.size:
            raise _invalid(f"keyframe {kid:016x}: {len(packed)} bytes, expected {chunk.size}")
        body = _inflate(packed, "keyframe")
        if keyframe_id(body) != kid:
            raise _invalid(f"keyframe {kid:016x}: body does not match its id")
        key = _parse(StateKeyframe, body, "keyframe")
        _validate_keyframe(key, chunk.network)
        return key, kid


def _validate_keyframe(k: network_pb2.StateKeyframe, network: str) -> None:
    if k.network != network:
        raise _invalid(f"keyframe.network {k.network!r} differs from its chunks' {network!r}")
    n = len(k.types)
    if n == 0:
        raise _missing("keyframe.types")
    columns = ("cloud", "x", "y", "capability", "mu", "cv", "compute_flops", "n_params")
    for name in columns:
        if len(getattr(k, name)) != n:
            raise _invalid(f"keyframe.{name} has {len(getattr(k, name))} entries, not N = {n}")
    types = np.asarray(k.types)
    if np.any(types < 1):
        raise _invalid(f"keyframe.types[{int(np.argmax(types < 1))}] is 0; types are 1-based")
    if len(k.link_u) != len(k.link_v):
        raise _invalid(f"keyframe: {len(k.link_u)} link_u but {len(k.link_v)} link_v")
    u, v = np.asarray(k.link_u, dtype=np.int64), np.asarray(k.link_v, dtype=np.int64)
    bad = (u >= n) | (v >= n) | (u == v)
    if np.any(bad):
        j = int(np.argmax(bad))
        raise _invalid(f"keyframe link {j} joins {u[j]} and {v[j]} (N = {n})")


def arrays_from_parts(
    key: network_pb2.StateKeyframe, keyframe: int, d: network_pb2.StateDelta
) -> StateArrays:
    """The :class:`StateArrays` of a keyframe (with id ``keyframe``) and one of its deltas
    (both validated), latencies derived by eq. 7.

    Raises:
        DecodeError: the delta is for another keyframe or network, or its columns do not
            match the keyframe's agents and links.
    """
    if d.keyframe_id != keyframe or d.network != key.network:
        raise DecodeError(
            "missing_keyframe",
            f"delta {d.seq} needs keyframe {d.keyframe_id:016x} of {d.network!r}",
        )
    n, e = len(key.types), len(key.link_u)
    if len(d.observations) != n or len(d.link_ber) != e:
        raise _invalid(
            f"delta {d.seq}: {len(d.observations)} agents and {len(d.link_ber)} links, "
            f"keyframe {n} and {e}"
        )
    mu, cv = np.asarray(key.mu, dtype=float), np.asarray(key.cv, dtype=float)
    return StateArrays(
        network=d.network,
        seq=d.seq,
        timestamp_ns=d.timestamp_ns,
        arrival_rate=d.arrival_rate,
        c_th=d.c_th,
        l_max=d.l_max,
        topology_seed=key.topology_seed,
        types=np.asarray(key.types, dtype=np.int64),
        cloud=np.asarray(key.cloud, dtype=bool),
        x=np.asarray(key.x, dtype=float),
        y=np.asarray(key.y, dtype=float),
        capability=np.asarray(key.capability, dtype=float),
        latency=agent_latency(d.arrival_rate, mu, cv),
        observations=np.asarray(d.observations, dtype=float),
        failures=np.asarray(d.failures, dtype=float),
        available=np.asarray(d.available, dtype=bool),
        mu=mu,
        cv=cv,
        compute_flops=np.asarray(key.compute_flops, dtype=float),
        n_params=np.asarray(key.n_params, dtype=float),
        edges=np.stack(
            [np.asarray(key.link_u, dtype=np.int64), np.asarray(key.link_v, dtype=np.int64)],
            axis=1,
        ).reshape(-1, 2),
        ber=np.asarray(d.link_ber, dtype=float),
    )


def network_from_parts(
    key: network_pb2.StateKeyframe,
    keyframe: int,
    d: network_pb2.StateDelta,
    cfg: ModelConfig = DEFAULT,
) -> Network:
    """The network a keyframe and one of its deltas describe (the
    :func:`network_from_state` of the large-state format).

    Raises:
        DecodeError: see :func:`arrays_from_parts` and :func:`network_from_arrays`.
    """
    return network_from_arrays(arrays_from_parts(key, keyframe, d), cfg, d)


# --------------------------------------------------------------------------------------
# JSON rendering (debugging)
# --------------------------------------------------------------------------------------
def to_json(msg: Message, *, indent: int | None = None) -> str:
    """Render an envelope or payload as JSON (proto field names, defaults included)."""
    return json_format.MessageToJson(
        msg,
        preserving_proto_field_name=True,
        indent=indent,
        always_print_fields_with_no_presence=True,
    )


def envelope_from_json(text: str) -> network_pb2.Envelope:
    """Parse the JSON rendering of an envelope (the inverse of :func:`to_json`).

    Raises:
        DecodeError: the text is not a JSON envelope.
    """
    env = Envelope()
    try:
        json_format.Parse(text, env)
    except json_format.ParseError as exc:
        raise DecodeError("garbage", f"not a JSON Envelope: {exc}") from None
    return env
