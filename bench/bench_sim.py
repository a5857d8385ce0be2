"""Emulator benchmarks (issue sim_ric): prints one JSON object.

- exhaustive optimum over the default network (target <= 50 ms);
- Gymnasium env step time;
- network generation at N = 81, 1,000 and 10,000 (target <= 5 s at 10,000).

Usage: ``python bench/bench_sim.py [--repeat R]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from agentnet.network import generate_network
from agentnet.optimum import build_search_space, exact_optimum
from sim_ric.env import AgenticNetworkEnv


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    res: dict[str, float] = {}

    nets = [generate_network(100 + i) for i in range(args.repeat)]
    it = iter(nets)

    def optimum() -> None:
        net = next(it)
        exact_optimum(build_search_space(net), [0.3, 0.2, 0.3, 0.2])

    t = timed(optimum, args.repeat)
    res["optimum_default_ms_p50"] = float(np.median(t) * 1e3)
    res["optimum_default_ms_max"] = float(np.max(t) * 1e3)
    space = build_search_space(generate_network(1))
    res["optimum_feasible_chains"] = space.feasible_count
    t = timed(lambda: exact_optimum(space, [0.3, 0.2, 0.3, 0.2]), args.repeat)
    res["optimum_reused_space_ms_p50"] = float(np.median(t) * 1e3)
    t = timed(lambda: build_search_space(generate_network(7, n_agents=200)), 3)
    res["optimum_space_n200_ms"] = float(np.median(t) * 1e3)

    env = AgenticNetworkEnv(resample_network=False, vary_conditions=False)
    _, info = env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while steps < 2000:
        a = int(np.flatnonzero(info["action_mask"])[0])
        _, _, done, _, info = env.step(a)
        steps += 1
        if done:
            _, info = env.reset()
    res["env_step_us"] = (time.perf_counter() - t0) / steps * 1e6

    for n in (81, 1000, 10_000):
        rep = 5 if n < 10_000 else 2
        t = timed(lambda n=n: generate_network(3, n_agents=n), rep)
        res[f"generate_n{n}_s"] = float(np.median(t))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
