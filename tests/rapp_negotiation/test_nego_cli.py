"""``rapp-negotiation`` commands, run as the user runs them (scripted negotiator: a test aid;
the committed results use SmolLM2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.processes import OFFLINE, ROOT, script_command

from rapp_negotiation.optimizer import Problem, theoretical_consensus


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*script_command("rapp-negotiation"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env={**os.environ, **OFFLINE})  # fmt: skip


@pytest.mark.slow
def test_bench_json_lists_every_negotiation_with_what_recomputes_x_star(tmp_path: Path):
    out = tmp_path / "bench.json"
    done = cli("bench", "--agents", "2,3", "--negotiations", "3", "--designs", "none,hard",
               "--llm", "scripted", "--arbitral", "off", "--json", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert json.loads(out.read_text())["results"] == result["results"]
    assert result["llm"] == result["origin"] == "scripted" and result["capacity"] > 0
    assert [(r["design"], r["agents"]) for r in result["results"]] == [
        ("none", 2), ("none", 3), ("hard", 2), ("hard", 3)]  # fmt: skip
    keys = {"design", "agents", "mae", "mae_sd", "mae_share_of_capacity", "rounds_mean",
            "messages_per_round", "seconds_mean", "fallbacks"}  # fmt: skip
    assert all(keys <= set(r) for r in result["results"])
    for r in result["results"]:
        assert r["messages_per_round"] == 2 * r["agents"]
        # The scripted negotiator is counted as such, never as the LLM.
        assert r["mediator_llm_share"] == 0 and r["tenant_llm_share"] == 0
        group = [n for n in result["negotiations"]
                 if (n["design"], n["agents"]) == (r["design"], r["agents"])]  # fmt: skip
        rounds = sum(n["rounds"] for n in group)
        assert sum(r["sources"]["mediator"].values()) == rounds
        assert sum(r["sources"]["tenant"].values()) == rounds * r["agents"]
        assert set(r["sources"]["tenant"]) <= {"scripted", "imposed", "fallback"}
        assert (
            r["sources"]["tenant"].get("fallback", 0) + r["sources"]["mediator"].get("fallback", 0)
            == r["fallbacks"]
        )
    assert len(result["negotiations"]) == 12
    for n in result["negotiations"]:
        p = Problem(tuple(n["targets"]), tuple(n["weights"]), n["capacity"], n["r_min"],
                    n["r_max"] if n["r_max"] is not None else float("inf"))  # fmt: skip
        assert theoretical_consensus(p) == pytest.approx(n["theoretical"], abs=1e-4)
        assert n["r_min"] <= n["agreed"] <= n["r_max"]
        assert len(n["announcement_sources"]) == n["rounds"]
        assert sum(n["tenant_sources"].values()) == n["rounds"] * n["agents"]
    hard = [r for r in result["results"] if r["design"] == "hard"]
    assert all(r["mae_share_of_capacity"] <= 0.005 for r in hard)


@pytest.mark.slow
def test_personalities_matrix_and_heat_map(tmp_path: Path):
    png = tmp_path / "fig3a.png"
    done = cli("personalities", "--games", "2", "--llm", "scripted", "--json", "--png", str(png))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["personalities"] == ["N", "A", "D", "V", "T"]
    mean = result["mean"]
    assert len(mean) == 5 and all(len(row) == 5 for row in mean)
    assert len(result["games"]) == 25 * 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v, t = 3, 4  # a vulnerable cost tenant against a toxic reach tenant ends at the reach target
    assert mean[v][t] > mean[0][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--designs", "none,wild", "--llm", "scripted"], "unknown designs"),
        (["bench", "--negotiations", "0"], "--negotiations"),
        (["run", "--design", "medium"], "--design"),
        (["run", "--broker", "http://x"], "scheme must be mqtt"),
        (["run", "--intents", "/nonexistent/tenants.yaml", "--llm", "scripted"], "tenants.yaml"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message):
    done = cli(*args, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
