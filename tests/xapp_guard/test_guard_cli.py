"""``xapp-guard`` end to end on small model-made recordings: features, windows, eval's JSON,
and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from guard_support import TINY, Perturb, model_corpus

from xapp_guard.config import METHODS, EvolveConfig, ExperimentConfig
from xapp_guard.experiment import run
from xapp_guard.features import N_FEATURES
from xapp_guard.scenarios import CLASSES

EXE = [str(Path(sys.executable).with_name("xapp-guard"))]


def guard(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    corpus = model_corpus(root / "corpus" / "seed-4", seed=4)
    out = root / "models"
    run(ExperimentConfig(corpus=corpus, out=out, seeds=2), EvolveConfig(generations=1, per_cell=1),
        TINY, chat=Perturb(), command="xapp-guard train (test)")  # fmt: skip
    test = model_corpus(out / "corpus" / "seed-9", seed=9, parts=("test",))
    return out, test


def test_features_table() -> None:
    rows = json.loads(guard("features", "--json").stdout)
    assert len(rows) == N_FEATURES and rows[0] == {
        "name": "pub_req", "unit": "msgs",
        "how": 'broker lines "Received PUBLISH from c" on ``.../requests``'}  # fmt: skip
    assert "report_unbacked" in guard("features").stdout


def test_windows_counts_each_part(trained) -> None:
    _, test = trained
    got = json.loads(guard("windows", str(test), "--json").stdout)
    assert set(got["by_part"]["test"]) >= {"benign", "request_flood", "memory_poisoning"}


def test_eval_reports_every_method_on_the_test_seed(trained) -> None:
    out, _ = trained
    report = json.loads(guard("eval", "--test-seed", "9", "--models", str(out), "--json").stdout)
    assert report["test_seed"] == 9
    assert set(report["methods"]) == set(METHODS)
    for m in report["methods"].values():
        assert {"accuracy", "macro_f1", "per_class"} <= set(m)
        assert len(m["seeds_macro_f1"]) == 2
        assert set(m["per_class"]) <= set(CLASSES)
    assert set(report["windows"]) == set(CLASSES)
    assert report["windows"]["benign"] > 0
    assert report["relative_gain_pct"]["paper_accuracy"] == 28.7
    alerts = report["alerts"]
    assert alerts["benign_windows"] == report["windows"]["benign"]
    assert set(alerts["episodes"]) == set(CLASSES[1:])
    for by_variant in alerts["episodes"].values():
        for v in by_variant.values():
            assert v["episodes"] == len(v["delay_windows"])


def test_eval_refuses_a_missing_recording_and_the_training_seed(trained) -> None:
    out, _ = trained
    missing = guard("eval", "--test-seed", "77", "--models", str(out), check=False)
    assert missing.returncode == 2 and "no test recording" in missing.stderr
    assert "--first-part test" in missing.stderr
    (out / "corpus" / "seed-4").symlink_to(out.parent / "corpus" / "seed-4")
    train_json = json.loads((out / "train.json").read_text())
    train_json["corpus"] = "models/guard/corpus/seed-4"
    (out / "train.json").write_text(json.dumps(train_json))
    same = guard("eval", "--test-seed", "4", "--models", str(out), check=False)
    assert same.returncode == 2 and "training recording's seed" in same.stderr


def test_usage_errors_are_one_line() -> None:
    done = guard("record", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--seed and --out are required" in done.stderr
    bad = guard("run", "--threshold", "2", check=False)
    assert bad.returncode == 2 and "--threshold" in bad.stderr
