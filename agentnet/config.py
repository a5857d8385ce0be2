"""Model constants and defaults of MODEL.md, as one typed, documented configuration.

Everything the emulator needs to generate a network and score a chain lives here, so that
a single object is read once at the edge (CLI, settings) and passed down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# Scaling-law constants of eq. 1 (LAMeTA, after Hoffmann et al.).
ZETA = 406.4
ETA = 410.7
ALPHA1 = 0.34
ALPHA2 = 0.28
L0 = 0.0


@dataclass(frozen=True)
class TierConfig:
    """Per-tier distributions of MODEL.md's network table."""

    p: float = field(metadata={"help": "probability that an agent is of this tier"})
    radius: tuple[float, float] = field(metadata={"help": "radius range around (0.5, 0.5)"})
    compute: tuple[float, float] = field(metadata={"help": "log-uniform FLOPs range of C_i"})
    speed: tuple[float, float] = field(metadata={"help": "uniform range of hardware speed h_i"})
    outage_beta: tuple[float, float] = field(metadata={"help": "Beta(a, b) of |F_i|/|O_i|"})


CLOUD = TierConfig(
    p=0.4, radius=(0.35, 0.5), compute=(1e22, 1e25), speed=(1.0, 3.0), outage_beta=(1, 300)
)
EDGE = TierConfig(
    p=0.6, radius=(0.0, 0.3), compute=(1e19, 3e22), speed=(0.5, 1.5), outage_beta=(1, 30)
)


@dataclass(frozen=True)
class ModelConfig:
    """Defaults of MODEL.md. Field help strings say where each value comes from."""

    n_agents: int = field(default=81, metadata={"help": "N, number of agents"})
    n_types: int = field(default=4, metadata={"help": "service types, round-robin (i mod T) + 1"})
    chain_types: tuple[int, ...] = field(
        default=(1, 2, 3), metadata={"help": "required types of an n-step GenSFC"}
    )
    k_neighbours: int = field(default=6, metadata={"help": "k of the k-nearest-neighbour graph"})
    cloud: TierConfig = CLOUD
    edge: TierConfig = EDGE
    t0: float = field(default=0.1, metadata={"help": "service-time scale t0 (s)"})
    gamma: float = field(default=0.7, metadata={"help": "service-time exponent on N_OP/1e9"})
    cv_range: tuple[float, float] = field(
        default=(0.5, 2.0), metadata={"help": "uniform range of V_i (eq. 5)"}
    )
    observations: float = field(default=1000.0, metadata={"help": "initial |O_i|"})
    snr_at_ref_db: float = field(default=7.0, metadata={"help": "SNR at the median link length"})
    path_loss_slope_db: float = field(default=30.0, metadata={"help": "dB per decade of distance"})
    shadowing_db: float = field(default=2.0, metadata={"help": "std of the shadowing (dB)"})
    snr_clip_db: tuple[float, float] = field(
        default=(0.0, 15.0), metadata={"help": "clip range of the link SNR (dB)"}
    )
    arrival_rate: float = field(default=1.0, metadata={"help": "lambda, req/s per chain"})
    c_th: float = field(default=0.02, metadata={"help": "capability threshold C_th"})
    l_max: float = field(default=10.0, metadata={"help": "latency bound L_max (s)"})
    c_ref: float = field(default=0.25, metadata={"help": "C_ref of u_C"})
    l_ref: float = field(default=0.05, metadata={"help": "L_ref of u_L (s)"})
    b_ref: float = field(default=1e-5, metadata={"help": "B at and below which u_B = 1"})
    b_decades: float = field(
        default=4.0, metadata={"help": "decades of B above b_ref over which u_B falls to 0"}
    )
    p_ref: float = field(default=1e-3, metadata={"help": "P_outage at and below which u_P = 1"})
    p_decades: float = field(
        default=3.0, metadata={"help": "decades of P_outage above p_ref over which u_P falls to 0"}
    )
    delta: float = field(default=1.0, metadata={"help": "r_flag magnitude of eq. 34"})
    fee_per_100m: float = field(
        default=0.01, metadata={"help": "E-LAM fee F(kappa) per 100 M parameters"}
    )

    def with_overrides(self, **kwargs: Any) -> ModelConfig:
        """Return a copy with the given fields replaced (unknown names raise)."""
        names = {f.name for f in fields(self)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return replace(self, **kwargs)

    @property
    def n_steps(self) -> int:
        """n, the number of agents in a chain."""
        return len(self.chain_types)


DEFAULT = ModelConfig()


def elam_fee(n_params: float, cfg: ModelConfig = DEFAULT) -> float:
    """Service fee F(kappa) of an E-LAM with ``n_params`` parameters (MODEL.md)."""
    return cfg.fee_per_100m * n_params / 1e8
