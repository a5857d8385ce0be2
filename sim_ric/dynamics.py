"""Time dynamics of the live emulator: arrival rate, AR(1) shadowing, crashes and recoveries.

All randomness comes from one numpy Generator, so a seeded run is reproducible. The
dynamics mutate a :class:`~agentnet.network.Network` in place through its update methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agentnet.network import Network


@dataclass(frozen=True)
class DynamicsConfig:
    """Parameters of the live dynamics (one tick = ``tick_s`` seconds of emulated time)."""

    tick_s: float = field(default=1.0, metadata={"help": "emulated seconds per tick"})
    rate_amplitude: float = field(
        default=0.3, metadata={"help": "relative amplitude of the diurnal-like rate swing"}
    )
    rate_period_s: float = field(default=600.0, metadata={"help": "period of the rate swing (s)"})
    rate_jitter: float = field(
        default=0.05, metadata={"help": "std of the log-normal jitter on the arrival rate"}
    )
    shadowing_corr: float = field(
        default=0.95, metadata={"help": "AR(1) coefficient of the shadowing per tick"}
    )
    mean_outage_ticks: float = field(
        default=20.0, metadata={"help": "mean duration of a crash, in ticks (geometric)"}
    )
    crash_scale: float = field(
        default=1.0,
        metadata={"help": "multiplies the crash hazard (1: long-run outage share = initial rate)"},
    )


class Dynamics:
    """Advances a network through time.

    Args:
        net: the network to mutate.
        rng: the random source (seeded by the caller).
        cfg: dynamics parameters.
    """

    def __init__(self, net: Network, rng: np.random.Generator, cfg: DynamicsConfig | None = None):
        self.net = net
        self.rng = rng
        self.cfg = cfg or DynamicsConfig()
        self.t = 0.0
        self.base_rate = net.arrival_rate
        # The drawn outage rate is the agent's long-run share of time in outage: with a
        # geometric outage of mean D ticks, a per-tick crash hazard r / ((1 - r) D) keeps
        # that share at r.
        r = np.clip(net.outage_rate, 0.0, 0.999)
        self.crash_hazard = np.clip(
            self.cfg.crash_scale * r / ((1.0 - r) * self.cfg.mean_outage_ticks), 0.0, 1.0
        )
        self.crashes = 0
        self.recoveries = 0

    def arrival_rate_at(self, t: float) -> float:
        """Deterministic part of lambda(t): base * (1 + a sin(2 pi t / period))."""
        c = self.cfg
        return self.base_rate * (1.0 + c.rate_amplitude * np.sin(2.0 * np.pi * t / c.rate_period_s))

    def tick(self) -> dict[str, int]:
        """Advance one tick; return the crash and recovery counts of this tick."""
        c = self.cfg
        net = self.net
        self.t += c.tick_s
        jitter = float(np.exp(self.rng.normal(0.0, c.rate_jitter)))
        net.set_arrival_rate(max(self.arrival_rate_at(self.t) * jitter, 1e-3))
        # AR(1) shadowing per link, stationary std = cfg shadowing (MODEL.md).
        sigma = net.cfg.shadowing_db
        a = c.shadowing_corr
        noise = self.rng.normal(0.0, sigma * np.sqrt(1.0 - a * a), net.n_links)
        net.set_shadowing(a * net.shadowing_db + noise)
        # Crashes and recoveries; every agent is observed once per tick (|O_i| += 1) and
        # an agent found in outage adds an outage event (|F_i| += 1).
        u = self.rng.random(net.n_agents)
        up = net.available
        crash = up & (u < self.crash_hazard)
        recover = ~up & (u < 1.0 / c.mean_outage_ticks)
        net.available = (up & ~crash) | recover
        net.observations = net.observations + 1.0
        net.failures = net.failures + (~net.available).astype(float)
        n_crash, n_rec = int(crash.sum()), int(recover.sum())
        self.crashes += n_crash
        self.recoveries += n_rec
        return {"crashes": n_crash, "recoveries": n_rec}
