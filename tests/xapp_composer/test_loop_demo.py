"""``make demo`` (``python -m xapp_composer.demo``): the whole loop in one command, with
the embedded broker, and its refusal to run without a policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.loop import ROOT, e2e_policy

DEMO = [sys.executable, "-m", "xapp_composer.demo"]


def test_demo_refuses_to_run_without_a_policy(tmp_path) -> None:
    res = subprocess.run(
        [*DEMO, "--policy", str(tmp_path / "none.onnx")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 2
    assert "models/policy/srl-general.onnx" in res.stderr and "xapp-composer export" in res.stderr


@pytest.mark.slow
def test_demo_runs_the_closed_loop_and_summarises(tmp_path) -> None:
    res = subprocess.run(
        [
            *DEMO,
            "--policy",
            str(e2e_policy()),
            "--requests",
            "20",
            "--rate",
            "10",
            "--logs",
            str(tmp_path / "logs"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert s["requests"] == 20 and s["lost"] == 0 and s["duplicated"] == 0
    assert s["decisions"] + s["rejections"] == 20
    assert s["outcomes"].get("served", 0) == s["decisions"]
    assert s["latency_ms"]["p50"] > 0 and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"]
    made = s["decision_made_ms"]  # built by the xApp before the subscriber received it
    assert 0 < made["p50"] <= s["latency_ms"]["p50"] and made["p99"] >= made["p50"]
    tenths = s["latency_by_tenth_ms"]  # 20 requests: ten windows of two, in request order
    assert [w["requests"] for w in tenths] == [2] * 10
    assert max(w["p99"] for w in tenths) <= s["latency_ms"]["max"]
    assert s["mean_normalized_score"] is not None
    logs = {p.name for p in (tmp_path / "logs").iterdir()}
    assert {"rapp-intent.log", "xapp-composer.log", "sim-ric.log"} <= logs
    xapp_log = (tmp_path / "logs" / "xapp-composer.log").read_text()
    assert '"event": "xapp_stopped"' in xapp_log  # shut down cleanly
