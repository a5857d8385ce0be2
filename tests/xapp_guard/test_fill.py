"""Template-constrained decoding with the real offline SmolLM2: every answer is JSON of the
template's shape, numbers where numbers go, one of the choices where a choice goes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xapp_guard.features import INDEX, N_FEATURES
from xapp_guard.fill import TemplateFiller
from xapp_guard.scenarios import SCHEMA
from xapp_guard.synth import (
    K_WINDOWS,
    GuardLlmSettings,
    scenario_prompt,
    scenario_template,
    window_prompt,
    window_template,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def filler(tmp_path_factory):
    memo = tmp_path_factory.mktemp("fill") / "memo.jsonl"
    return TemplateFiller(GuardLlmSettings().cache_dir, memo=memo, threads=1)


def test_scenarios_come_out_in_the_schema_shape(filler) -> None:
    ex = [{"rate_hz": 12.5, "jitter": 0.3, "burst": 2, "duration_s": 12.0, "target": "pending",
           "valid_chain": "yes"},
          {"rate_hz": 4.0, "jitter": 0.7, "burst": 1, "duration_s": 14.0, "target": "unknown",
           "valid_chain": "no"}]  # fmt: skip
    ans = filler.fill(scenario_prompt("forged_decision", "fast", ex),
                      scenario_template("forged_decision"), 0.8)  # fmt: skip
    data = json.loads(ans.text)
    assert list(data) == list(SCHEMA["forged_decision"])
    assert data["target"] in ("pending", "unknown") and data["valid_chain"] in ("yes", "no")
    assert isinstance(data["burst"], int) and isinstance(data["rate_hz"], int | float)
    # Memoised: the same prompt costs nothing and answers the same.
    again = filler.fill(scenario_prompt("forged_decision", "fast", ex),
                        scenario_template("forged_decision"), 0.8)  # fmt: skip
    assert again.text == ans.text and filler.memo_path.read_text().count("\n") == 1


def test_windows_use_the_examples_features(filler) -> None:
    seq = np.zeros((8, N_FEATURES), np.float32)
    seq[-2:, INDEX["rpc_report"]] = [12, 15]
    seq[-2:, INDEX["report_unbacked"]] = [12, 15]
    seq[-1, INDEX["iat_mean"]] = 0.05
    ans = filler.fill(window_prompt("memory_poisoning", "fast", [seq]), window_template([seq]), 0.8)
    windows = json.loads(ans.text)
    assert len(windows) == K_WINDOWS
    assert all(set(w) == {"rpc_report", "report_unbacked", "iat_mean"} for w in windows)
    assert all(isinstance(w["rpc_report"], int) for w in windows)
