"""Tiny end-to-end runs of the xapp-composer commands: train, export, eval, bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.shared import shared_file

EXE = [sys.executable, "-m", "xapp_composer.cli"]
TINY = [
    "--predictions",
    "synthetic",
    "--steps",
    "1500",
    "--minutes",
    "1",
    "--pool-size",
    "16",
    "--batch-episodes",
    "32",
    "--eval-every",
    "5",
    "--hidden",
    "16",
    "--quiet",
]


def run(*args: str) -> dict:
    res = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    # stdout holds exactly one JSON object (logs and progress go to stderr)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    out = runs / "models"
    a = run("train", *TINY, "--out", str(runs))
    b = run("train", "--mode", "even", *TINY, "--out", str(runs))
    assert a["name"] == "srl-general" and b["name"] == "drl-even"
    for name in ("srl-general", "drl-even"):
        assert (runs / f"{name}.curve.csv").exists() and (runs / f"{name}.curve.png").exists()
    report = run("export", "--runs", str(runs), "--out", str(out))
    for name in ("srl-general", "drl-even"):
        assert report[name]["parity_max_abs_error"] < 1e-4
        card = json.loads((out / f"{name}.card.json").read_text())
        assert card["sha256"] and card["encoder"]["sha256"] and card["inputs"]["raw"]
    return out


def test_eval_reports_every_method(models: Path) -> None:
    dev = shared_file("spec", "dev_intents.jsonl")
    out = run(
        "eval",
        "--intents",
        str(dev),
        "--seeds",
        "101",
        "--requests",
        "24",
        "--predictions",
        "synthetic",
        "--llm",
        "off",
        "--starts",
        "2",
        "--models",
        str(models),
        "--json",
    )
    for method in ("random", "greedy", "drl_even", "srl", "srl_m2"):
        m = out[method]
        assert set(m) >= {"normalized_score", "score", "Q", "C", "B", "L", "P_outage", "elam_share"}
        assert m["n"] == 24 and np.isfinite(m["normalized_score"])
        assert sum(a["n"] for a in m["per_app"].values()) == 24
    assert abs(out["random"]["normalized_score"]) < 0.6  # random sits near the floor
    # Plain SRL stays reported beside multi-start decoding; the policies' latency is given.
    assert out["_meta"]["starts"] == [2]
    for method in ("drl_even", "srl", "srl_m2"):
        assert 0 < out[method]["decide_p50_ms"] <= out[method]["decide_p90_ms"]
    assert out["srl_m2"]["elam_share"] == out["srl"]["elam_share"]  # same E-LAM choices
    assert out["drl_even"]["elam_share"].get("none") == 1.0
    refs = ("even", "minilm", "smollm2", "app_mean", "true_mse_0.004", "true_mse_0.008")
    for ref in refs:
        assert out[f"ref_best_for_{ref}"]["feasible"] == 1.0
        assert out[f"ref_best_for_{ref}"]["n"] == 24
    # a more precise vector never does worse on average than a less precise one here
    assert out["ref_best_for_true_mse_0.004"]["normalized_score"] >= (
        out["ref_best_for_true_mse_0.008"]["normalized_score"] - 0.05
    )


def test_bench_prints_latency(models: Path) -> None:
    out = run(
        "bench",
        "--agents",
        "81",
        "--decisions",
        "20",
        "--networks",
        "2",
        "--policy",
        str(models / "srl-general.onnx"),
        "--json",
    )
    assert out["provider"] == "CPUExecutionProvider"
    assert 0 < out["p50_ms"] <= out["p99_ms"]
    assert out["srl_starts"] == 1  # below the xApp's multi-start size: greedy, as it serves


def test_bench_decodes_as_the_xapp_does(models: Path) -> None:
    """The bench times the decoding the live xApp would use on that size."""
    common = ["--decisions", "3", "--networks", "1", "--json"]
    policy = ["--policy", str(models / "srl-general.onnx")]
    out = run("bench", "--agents", "81", "--srl-starts-min-agents", "50", "--srl-starts",
              "3", *policy, *common)  # fmt: skip
    assert out["srl_starts"] == 3
    out = run("bench", "--agents", "81", "--srl-starts", "3", *policy, *common)
    assert out["srl_starts"] == 1


def test_warm_start_from_the_general_policy(models: Path, tmp_path: Path) -> None:
    runs = models.parent
    init = runs / "srl-general.pt"
    out = run("train", "--app", "qa", "--init", str(init), *TINY, "--out", str(tmp_path))
    assert out["name"] == "srl-qa"
    summary = json.loads((tmp_path / "srl-qa.train.json").read_text())
    assert summary["config"]["init"] == str(init)
    # the starting weights were validated first and compete as iteration 0
    assert summary["best"]["iteration"] >= 0 and np.isfinite(
        summary["best"]["val_normalized_score"]
    )
    # a checkpoint of another shape is a clear error, not a crash
    res = subprocess.run(
        [
            *EXE,
            "train",
            "--app",
            "qa",
            "--init",
            str(init),
            *TINY[:-3],
            "--hidden",
            "8",
            "--quiet",
            "--out",
            str(tmp_path / "bad"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2 and "policy shape" in res.stderr
