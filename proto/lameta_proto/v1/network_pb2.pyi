from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Agent(_message.Message):
    __slots__ = ("id", "type", "tier", "x", "y", "capability", "latency", "observations", "failures", "available", "mu", "cv", "compute_flops", "n_params")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    MU_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FLOPS_FIELD_NUMBER: _ClassVar[int]
    N_PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: int
    tier: str
    x: float
    y: float
    capability: float
    latency: float
    observations: float
    failures: float
    available: bool
    mu: float
    cv: float
    compute_flops: float
    n_params: float
    def __init__(self, id: _Optional[int] = ..., type: _Optional[int] = ..., tier: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., capability: _Optional[float] = ..., latency: _Optional[float] = ..., observations: _Optional[float] = ..., failures: _Optional[float] = ..., available: _Optional[bool] = ..., mu: _Optional[float] = ..., cv: _Optional[float] = ..., compute_flops: _Optional[float] = ..., n_params: _Optional[float] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("u", "v", "ber")
    U_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    BER_FIELD_NUMBER: _ClassVar[int]
    u: int
    v: int
    ber: float
    def __init__(self, u: _Optional[int] = ..., v: _Optional[int] = ..., ber: _Optional[float] = ...) -> None: ...

class NetworkState(_message.Message):
    __slots__ = ("network", "seq", "timestamp_ns", "arrival_rate", "c_th", "l_max", "agents", "links", "topology_seed")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    C_TH_FIELD_NUMBER: _ClassVar[int]
    L_MAX_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_SEED_FIELD_NUMBER: _ClassVar[int]
    network: str
    seq: int
    timestamp_ns: int
    arrival_rate: float
    c_th: float
    l_max: float
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    links: _containers.RepeatedCompositeFieldContainer[Link]
    topology_seed: int
    def __init__(self, network: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., arrival_rate: _Optional[float] = ..., c_th: _Optional[float] = ..., l_max: _Optional[float] = ..., agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ..., topology_seed: _Optional[int] = ...) -> None: ...

class ServiceRequest(_message.Message):
    __slots__ = ("request_id", "prompt", "app", "chain_types", "arrival_rate", "timestamp_ns")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TYPES_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt: str
    app: str
    chain_types: _containers.RepeatedScalarFieldContainer[int]
    arrival_rate: float
    timestamp_ns: int
    def __init__(self, request_id: _Optional[str] = ..., prompt: _Optional[str] = ..., app: _Optional[str] = ..., chain_types: _Optional[_Iterable[int]] = ..., arrival_rate: _Optional[float] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class ControlDecision(_message.Message):
    __slots__ = ("request_id", "chain", "elam", "predicted", "policy_version", "fallback", "calibrated", "rejection", "timestamp_ns", "state_seq")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ELAM_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    STATE_SEQ_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    chain: _containers.RepeatedScalarFieldContainer[int]
    elam: str
    predicted: _containers.RepeatedScalarFieldContainer[float]
    policy_version: str
    fallback: bool
    calibrated: bool
    rejection: str
    timestamp_ns: int
    state_seq: int
    def __init__(self, request_id: _Optional[str] = ..., chain: _Optional[_Iterable[int]] = ..., elam: _Optional[str] = ..., predicted: _Optional[_Iterable[float]] = ..., policy_version: _Optional[str] = ..., fallback: _Optional[bool] = ..., calibrated: _Optional[bool] = ..., rejection: _Optional[str] = ..., timestamp_ns: _Optional[int] = ..., state_seq: _Optional[int] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("request_id", "accepted", "reason", "feasible", "C", "B", "L", "P_outage", "Q", "Q_subjective", "reward", "normalized_score", "elam", "chain", "prompt", "predicted", "app", "timestamp_ns", "code", "resolved")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    L_FIELD_NUMBER: _ClassVar[int]
    P_OUTAGE_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    Q_SUBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_SCORE_FIELD_NUMBER: _ClassVar[int]
    ELAM_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    accepted: bool
    reason: str
    feasible: bool
    C: float
    B: float
    L: float
    P_outage: float
    Q: float
    Q_subjective: float
    reward: float
    normalized_score: float
    elam: str
    chain: _containers.RepeatedScalarFieldContainer[int]
    prompt: str
    predicted: _containers.RepeatedScalarFieldContainer[float]
    app: str
    timestamp_ns: int
    code: str
    resolved: bool
    def __init__(self, request_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., feasible: _Optional[bool] = ..., C: _Optional[float] = ..., B: _Optional[float] = ..., L: _Optional[float] = ..., P_outage: _Optional[float] = ..., Q: _Optional[float] = ..., Q_subjective: _Optional[float] = ..., reward: _Optional[float] = ..., normalized_score: _Optional[float] = ..., elam: _Optional[str] = ..., chain: _Optional[_Iterable[int]] = ..., prompt: _Optional[str] = ..., predicted: _Optional[_Iterable[float]] = ..., app: _Optional[str] = ..., timestamp_ns: _Optional[int] = ..., code: _Optional[str] = ..., resolved: _Optional[bool] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("network", "negotiation_id", "arrival_rate", "timestamp_ns", "valid_until_ns", "capacity", "state_seq", "reason")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    NEGOTIATION_ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_NS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    STATE_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    network: str
    negotiation_id: str
    arrival_rate: float
    timestamp_ns: int
    valid_until_ns: int
    capacity: float
    state_seq: int
    reason: str
    def __init__(self, network: _Optional[str] = ..., negotiation_id: _Optional[str] = ..., arrival_rate: _Optional[float] = ..., timestamp_ns: _Optional[int] = ..., valid_until_ns: _Optional[int] = ..., capacity: _Optional[float] = ..., state_seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StateKeyframe(_message.Message):
    __slots__ = ("network", "topology_seed", "types", "cloud", "x", "y", "capability", "mu", "cv", "compute_flops", "n_params", "link_u", "link_v")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_SEED_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    CLOUD_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    MU_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FLOPS_FIELD_NUMBER: _ClassVar[int]
    N_PARAMS_FIELD_NUMBER: _ClassVar[int]
    LINK_U_FIELD_NUMBER: _ClassVar[int]
    LINK_V_FIELD_NUMBER: _ClassVar[int]
    network: str
    topology_seed: int
    types: _containers.RepeatedScalarFieldContainer[int]
    cloud: _containers.RepeatedScalarFieldContainer[bool]
    x: _containers.RepeatedScalarFieldContainer[float]
    y: _containers.RepeatedScalarFieldContainer[float]
    capability: _containers.RepeatedScalarFieldContainer[float]
    mu: _containers.RepeatedScalarFieldContainer[float]
    cv: _containers.RepeatedScalarFieldContainer[float]
    compute_flops: _containers.RepeatedScalarFieldContainer[float]
    n_params: _containers.RepeatedScalarFieldContainer[float]
    link_u: _containers.RepeatedScalarFieldContainer[int]
    link_v: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, network: _Optional[str] = ..., topology_seed: _Optional[int] = ..., types: _Optional[_Iterable[int]] = ..., cloud: _Optional[_Iterable[bool]] = ..., x: _Optional[_Iterable[float]] = ..., y: _Optional[_Iterable[float]] = ..., capability: _Optional[_Iterable[float]] = ..., mu: _Optional[_Iterable[float]] = ..., cv: _Optional[_Iterable[float]] = ..., compute_flops: _Optional[_Iterable[float]] = ..., n_params: _Optional[_Iterable[float]] = ..., link_u: _Optional[_Iterable[int]] = ..., link_v: _Optional[_Iterable[int]] = ...) -> None: ...

class StateDelta(_message.Message):
    __slots__ = ("network", "seq", "timestamp_ns", "keyframe_id", "arrival_rate", "c_th", "l_max", "observations", "failures", "available", "link_ber")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    C_TH_FIELD_NUMBER: _ClassVar[int]
    L_MAX_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    LINK_BER_FIELD_NUMBER: _ClassVar[int]
    network: str
    seq: int
    timestamp_ns: int
    keyframe_id: int
    arrival_rate: float
    c_th: float
    l_max: float
    observations: _containers.RepeatedScalarFieldContainer[float]
    failures: _containers.RepeatedScalarFieldContainer[float]
    available: _containers.RepeatedScalarFieldContainer[bool]
    link_ber: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, network: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., keyframe_id: _Optional[int] = ..., arrival_rate: _Optional[float] = ..., c_th: _Optional[float] = ..., l_max: _Optional[float] = ..., observations: _Optional[_Iterable[float]] = ..., failures: _Optional[_Iterable[float]] = ..., available: _Optional[_Iterable[bool]] = ..., link_ber: _Optional[_Iterable[float]] = ...) -> None: ...

class StateChunk(_message.Message):
    __slots__ = ("network", "body", "keyframe_id", "seq", "index", "count", "size", "offset", "data")
    class Body(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BODY_UNSPECIFIED: _ClassVar[StateChunk.Body]
        KEYFRAME: _ClassVar[StateChunk.Body]
        DELTA: _ClassVar[StateChunk.Body]
    BODY_UNSPECIFIED: StateChunk.Body
    KEYFRAME: StateChunk.Body
    DELTA: StateChunk.Body
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    network: str
    body: StateChunk.Body
    keyframe_id: int
    seq: int
    index: int
    count: int
    size: int
    offset: int
    data: bytes
    def __init__(self, network: _Optional[str] = ..., body: _Optional[_Union[StateChunk.Body, str]] = ..., keyframe_id: _Optional[int] = ..., seq: _Optional[int] = ..., index: _Optional[int] = ..., count: _Optional[int] = ..., size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("schema", "state", "request", "decision", "outcome", "policy", "state_chunk")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    schema: int
    state: NetworkState
    request: ServiceRequest
    decision: ControlDecision
    outcome: Outcome
    policy: Policy
    state_chunk: StateChunk
    def __init__(self, schema: _Optional[int] = ..., state: _Optional[_Union[NetworkState, _Mapping]] = ..., request: _Optional[_Union[ServiceRequest, _Mapping]] = ..., decision: _Optional[_Union[ControlDecision, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., state_chunk: _Optional[_Union[StateChunk, _Mapping]] = ...) -> None: ...
