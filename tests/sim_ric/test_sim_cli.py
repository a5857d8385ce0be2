"""Tiny end-to-end runs of the sim-ric commands (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentnet.chain import evaluate_chain
from agentnet.network import generate_network

EXE = [sys.executable, "-m", "sim_ric.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, check=check, timeout=120)


def test_export_network() -> None:
    out = json.loads(run("export-network", "--seed", "5", "--agents", "30", "--json").stdout)
    assert set(out) == {"agents", "links", "arrival_rate", "c_th", "l_max"}
    assert len(out["agents"]) == 30
    assert set(out["agents"][0]) == {
        "id", "type", "tier", "x", "y", "compute_flops", "n_params", "p_success",
        "mu", "cv", "observations", "failures", "available",
    }  # fmt: skip
    assert set(out["links"][0]) == {"u", "v", "ber"}
    net = generate_network(5, n_agents=30)
    assert len(out["links"]) == net.n_links
    assert out["agents"][7]["p_success"] == net.p_success[7]


def test_inspect_one_and_several_chains() -> None:
    one = json.loads(
        run("inspect", "--seed", "2", "--chain", "0,1,2", "--intent", "0.4,0.3,0.15,0.15",
            "--fee", "0.01", "--json").stdout
    )  # fmt: skip
    want = evaluate_chain(generate_network(2), [0, 1, 2], [0.4, 0.3, 0.15, 0.15], fee=0.01)
    keys = {"chain", "feasible", "reason", "C", "B", "L", "P_outage", "Q", "Q_subjective",
            "r_steps", "r_episode"}  # fmt: skip
    assert set(one) == keys
    assert one["r_episode"] == pytest.approx(want.r_episode)
    both = json.loads(
        run("inspect", "--seed", "2", "--chain", "0,1,2", "--chain", "0,2,1", "--intent",
            "0.25,0.25,0.25,0.25", "--objective", "paper", "--json").stdout
    )  # fmt: skip
    assert isinstance(both, list) and len(both) == 2
    assert not both[1]["feasible"] and "type" in both[1]["reason"]
    assert both[1]["Q_subjective"] == -10.0


def test_optimum() -> None:
    out = json.loads(run("optimum", "--seed", "3", "--intent", "0.2,0.1,0.5,0.2", "--json").stdout)
    assert set(out) == {"chain", "r_episode", "Q_subjective", "random_mean", "feasible_count"}
    assert out["r_episode"] > out["random_mean"] and out["feasible_count"] > 1000


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "--seed", "1", "--chain", "0,1,999", "--intent", "0.25,0.25,0.25,0.25"),
        ("inspect", "--seed", "1", "--chain", "0,1", "--intent", "0.25,0.25,0.25,0.25"),
        ("optimum", "--seed", "1", "--intent", "0.5,0.5,0.5,0.5"),
        ("optimum", "--seed", "1", "--intent", "nan,0.5,0.25,0.25"),
    ],
)
def test_bad_input_is_a_clear_error(args) -> None:
    res = run(*args, check=False)
    assert res.returncode == 2
    assert res.stderr.strip() and "Traceback" not in res.stderr


def test_optimum_unavailable_beyond_limit() -> None:
    res = run("optimum", "--seed", "1", "--agents", "1200", "--intent", "0.25,0.25,0.25,0.25",
              check=False)  # fmt: skip
    assert res.returncode == 3 and "unavailable" in res.stderr
