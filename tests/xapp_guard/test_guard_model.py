"""The detector: training moves it, ONNX export matches torch, the runtime trusts only its card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xapp_guard.config import TrainConfig
from xapp_guard.export import export_onnx, parity_check, random_inputs, write_card
from xapp_guard.features import INDEX, N_FEATURES
from xapp_guard.model import GuardCNN, ModelConfig
from xapp_guard.runtime import Detector, DetectorError
from xapp_guard.scenarios import CLASSES
from xapp_guard.scoring import scores
from xapp_guard.train import fit, predict


def _toy(rng: np.random.Generator, n: int = 40):
    """Benign sequences and floods (many requests), separable by construction."""
    x = random_inputs(rng, 2 * n, 8) * 0.01
    x[:n, :, INDEX["pub_req"]] = rng.uniform(0, 3, (n, 8))
    x[n:, :, INDEX["pub_req"]] = rng.uniform(20, 40, (n, 8))
    y = np.array([0] * n + [CLASSES.index("request_flood")] * n)
    return x, y


def test_a_training_step_changes_every_layer() -> None:
    torch.manual_seed(0)
    m = GuardCNN(ModelConfig(length=8, hidden=8))
    x, y = _toy(np.random.default_rng(0))
    m.set_scaling(x)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt.step()
    for name, value in m.state_dict().items():
        if name in ("mean", "std"):
            assert torch.equal(value, before[name]), "the input scaling is not trained"
        else:
            assert not torch.equal(value, before[name]), f"{name} did not move"


def test_fit_learns_a_separable_toy_problem() -> None:
    rng = np.random.default_rng(1)
    x, y = _toy(rng)
    xv, yv = _toy(rng, 20)
    model, info = fit(x, y, xv, yv, TrainConfig(epochs=20, hidden=8, batch=16, lr=1e-2))
    assert info["val_macro_f1"] == 1.0
    assert scores(yv, predict(model, xv).argmax(1))["accuracy"] == 1.0


def test_scores_hand_computed() -> None:
    s = scores(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]))
    assert s["accuracy"] == 0.6
    assert s["per_class"]["benign"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert s["per_class"]["forged_decision"]["f1"] == pytest.approx(0.8)
    assert s["per_class"]["forged_outcome"]["f1"] == 0.0
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3, abs=1e-4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    m = GuardCNN(ModelConfig(length=8, hidden=16))
    m.set_scaling(random_inputs(np.random.default_rng(0), 64, 8))
    m.eval()
    path = tmp_path_factory.mktemp("det") / "toy.onnx"
    export_onnx(m, path)
    return m, path


def test_onnx_matches_torch_on_fresh_inputs(exported) -> None:
    m, path = exported
    worst = parity_check(m, path, seed=7)
    assert worst < 1e-4


def test_runtime_checks_the_card_and_applies_the_threshold(exported, tmp_path) -> None:
    m, path = exported
    write_card(path, m, {"alert": {"threshold": 0.3}})
    det = Detector(path)
    assert det.length == 8 and det.threshold == 0.3
    x = random_inputs(np.random.default_rng(5), 16, 8)
    with torch.no_grad():
        ref = torch.softmax(m(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(det.probs(x), ref, atol=1e-5)
    for v, p in zip(det.verdicts(x), ref, strict=True):
        assert v.alert == (p[0] < 0.3)
        assert v.attack == CLASSES[1 + int(np.argmax(p[1:]))]
    with pytest.raises(ValueError, match="expected"):
        det.probs(np.zeros((2, 5, N_FEATURES), np.float32))
    assert Detector(path, threshold=0.9).threshold == 0.9


def test_runtime_refuses_an_altered_model_or_a_foreign_card(exported, tmp_path) -> None:
    m, path = exported
    write_card(path, m, {})
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(path.read_bytes() + b"\0")
    card = json.loads(path.with_suffix(".card.json").read_text())
    copy.with_suffix(".card.json").write_text(json.dumps(card))
    with pytest.raises(DetectorError, match="sha256"):
        Detector(copy)
    copy.write_bytes(path.read_bytes())
    card["features"] = card["features"][:-1]
    copy.with_suffix(".card.json").write_text(json.dumps(card))
    with pytest.raises(DetectorError, match="other features"):
        Detector(copy)
    with pytest.raises(DetectorError, match="are both needed"):
        Detector(tmp_path / "missing.onnx")
