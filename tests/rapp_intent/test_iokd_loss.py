"""The IoKD loss (paper eq. 31) and its per-sample beta (eq. 32), on hand-computed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.iokd import sample

from rapp_intent.iokd.config import LossConfig
from rapp_intent.iokd.loss import dataset_means, iokd_loss, mean_vector, pairwise_loss, sample_beta


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_eq_31_on_hand_computed_log_probabilities() -> None:
    # Pair 1: log-ratios chosen -1.0 - (-1.5) = 0.5, rejected -3.0 - (-2.0) = -1.0;
    # margin 1.5, beta 0.2: -log sigma(0.3) = log(1 + e^-0.3) = 0.554355244468527.
    # Pair 2: the policy equals the reference: margin 0, -log sigma(0) = log 2.
    # Pair 3: the policy prefers s_c by 2 nats, beta 1: log(1 + e^2) = 2.126928011042972.
    loss = pairwise_loss(
        _t(-1.0, -2.0, -4.0),
        _t(-3.0, -2.0, -1.0),
        _t(-1.5, -2.0, -3.0),
        _t(-2.0, -2.0, -2.0),
        _t(0.2, 0.7, 1.0),
    )
    expected = [0.554355244468527, 0.693147180559945, 2.126928011042972]
    assert loss.tolist() == pytest.approx(expected, abs=1e-12)


def test_eq_31_depends_on_the_margin_only_and_falls_as_it_grows() -> None:
    margins = torch.linspace(-3, 3, 13, dtype=torch.float64)
    zero = torch.zeros_like(margins)
    # The same margin from other log-probabilities: the reference cancels out.
    a = pairwise_loss(margins, zero, zero, zero, torch.tensor(0.5))
    b = pairwise_loss(margins - 7.0, zero + 1.0, zero - 7.0, zero + 1.0, torch.tensor(0.5))
    assert torch.allclose(a, b)
    assert torch.all(a[1:] < a[:-1]) and torch.all(a > 0)
    # -log sigma(x) - (-log sigma(-x)) = -x: a pair and its swap differ by beta * margin.
    swapped = pairwise_loss(zero, margins, zero, zero, torch.tensor(0.5))
    assert torch.allclose(a - swapped, -0.5 * margins)


def test_iokd_loss_is_the_mean_plus_the_weighted_nll_of_s_p() -> None:
    pc, pr = _t(-1.0, -2.0), _t(-3.0, -1.0)
    rc, rr = _t(-1.5, -2.0), _t(-2.0, -2.0)
    beta = _t(0.2, 1.0)
    # Pair 1: 0.554355244468527 (above); pair 2: margin (0) - (1) = -1, beta 1:
    # log(1 + e) = 1.313261687518223. Mean 0.933808465993375.
    out = iokd_loss(pc, pr, rc, rr, beta)
    assert float(out.loss) == pytest.approx(0.933808465993375, abs=1e-12)
    assert float(out.accuracy) == 0.5  # pair 1 ranks s_p first, pair 2 does not
    assert float(out.margin) == pytest.approx((1.5 - 1.0) / 2)
    # NLL of s_p per pair: -(-1, -2) / 2 = (0.5, 1.0), mean 0.75, weight 0.5.
    with_nll = iokd_loss(pc, pr, rc, rr, beta, nll_weight=0.5, nll_norm=2.0)
    assert float(with_nll.nll) == pytest.approx(0.75)
    assert float(with_nll.loss) == pytest.approx(0.933808465993375 + 0.375, abs=1e-12)


def test_gradient_raises_the_chosen_and_lowers_the_rejected_log_probability() -> None:
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    out = iokd_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), torch.tensor([0.5]))
    out.loss.backward()
    # d/dpc -log sigma(beta (pc - pr)) = -beta sigma(-0) = -0.25; for pr the opposite.
    assert pc.grad.item() == pytest.approx(-0.25)
    assert pr.grad.item() == pytest.approx(0.25)
    # One descent step raises log pi(s_p) and lowers log pi(s_c), lowering the loss.
    with torch.no_grad():
        after = iokd_loss(pc - 0.1 * pc.grad, pr - 0.1 * pr.grad, _t(-2.0), _t(-2.0), _t(0.5))
    assert float(after.loss) < float(out.loss)


def test_beta_of_eq_32_on_hand_computed_angles() -> None:
    cfg = LossConfig(kind="iokd", beta_base=0.1, lam=1.5)
    s_bar = np.array([1.0, 0.0, 0.0, 0.0])
    s_p = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],  # angle 0: Dis 0, beta = beta_base
            [0.5, 0.5, 0.0, 0.0],  # angle pi/4: Dis 0.25, beta 0.1 (1 - 0.375) = 0.0625
            [0.0, 1.0, 0.0, 0.0],  # angle pi/2: Dis 0.5, beta 0.1 (1 - 0.75) = 0.025
        ]
    )
    assert sample_beta(s_p, s_bar, cfg).tolist() == pytest.approx([0.1, 0.0625, 0.025])
    # Plain DPO: beta_base whatever the distance; lambda 0 likewise.
    assert sample_beta(s_p, s_bar, LossConfig(kind="dpo")).tolist() == [0.1] * 3
    assert sample_beta(s_p, s_bar, LossConfig(lam=0.0)).tolist() == pytest.approx([0.1] * 3)
    # One mean per sample (each sample's own application).
    per_sample = sample_beta(s_p[:2], np.array([[0.0, 1.0, 0, 0], [0.5, 0.5, 0, 0]]), cfg)
    assert per_sample.tolist() == pytest.approx([0.025, 0.1])


def test_beta_falls_monotonically_away_from_the_mean() -> None:
    s_bar = mean_vector(np.array([[0.3, 0.1, 0.45, 0.15], [0.25, 0.15, 0.4, 0.2]]))
    outlier = np.array([0.1, 0.6, 0.1, 0.2])
    path = np.array([(1 - t) * s_bar + t * outlier for t in np.linspace(0, 1, 6)])
    betas = sample_beta(path, s_bar, LossConfig(beta_base=0.1, lam=1.5))
    assert betas[0] == pytest.approx(0.1) and np.all(np.diff(betas) < 0)
    wide = sample_beta(path, s_bar, LossConfig(beta_base=0.1, lam=1.9))
    assert np.all(wide[1:] < betas[1:])  # a larger lambda spreads beta further


def test_the_mean_of_eq_32_is_taken_per_target_application() -> None:
    samples = [
        sample("qa-1", "a", [0.2, 0.2, 0.4, 0.2], target_app="qa"),
        sample("qa-2", "b", [0.4, 0.2, 0.2, 0.2], target_app="qa"),
        sample("c-1", "c", [0.7, 0.1, 0.1, 0.1], app="content", target_app="content"),
    ]
    means = dataset_means(samples)
    assert means["qa"].tolist() == pytest.approx([0.3, 0.2, 0.3, 0.2])
    assert means["content"].tolist() == pytest.approx([0.7, 0.1, 0.1, 0.1])


def test_a_beta_that_reaches_zero_and_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="non-positive"):
        sample_beta(np.array([[1.0, 0, 0, 0]]), np.array([0, 1.0, 0, 0]), LossConfig(lam=2.0))
    with pytest.raises(ValueError, match="kind"):
        LossConfig(kind="ipo")
    with pytest.raises(ValueError, match="beta_base"):
        LossConfig(beta_base=0.0)
    with pytest.raises(ValueError, match="nll_weight"):
        LossConfig(nll_weight=-1.0)
