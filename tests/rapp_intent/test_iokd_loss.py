"""The IoKD loss (paper eq. 31) and its per-sample beta (eq. 32)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rapp_intent.iokd.contrastive import angular_distance
from rapp_intent.iokd.loss import (
    LossConfig,
    iokd_loss,
    mean_vector,
    pairwise_loss,
    sample_beta,
)


def test_pairwise_loss_against_a_hand_computed_value() -> None:
    # log-ratios: chosen -1.0 - (-1.5) = 0.5; rejected -3.0 - (-2.0) = -1.0
    # margin 0.5 - (-1.0) = 1.5; beta 0.2 -> -log sigma(0.3) = log(1 + e^-0.3)
    loss = pairwise_loss(
        torch.tensor([-1.0]),
        torch.tensor([-3.0]),
        torch.tensor([-1.5]),
        torch.tensor([-2.0]),
        torch.tensor([0.2]),
    )
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-0.3)), abs=1e-7)
    assert math.log(1 + math.exp(-0.3)) == pytest.approx(0.5543552444685, abs=1e-12)


def test_iokd_loss_is_the_mean_plus_the_optional_nll() -> None:
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-2.0, -2.0])
    beta = torch.tensor([0.2, 1.0])
    # pair 2: margin (0) - (1) = -1, beta 1 -> log(1 + e^1)
    expected = (math.log(1 + math.exp(-0.3)) + math.log(1 + math.exp(1.0))) / 2
    out = iokd_loss(pc, pr, rc, rr, beta)
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert float(out.accuracy) == 0.5
    with_nll = iokd_loss(pc, pr, rc, rr, beta, nll_weight=0.5, nll_norm=2.0)
    # NLL of s_p: mean(-(-1, -2) / 2) = 0.75
    assert float(with_nll.loss) == pytest.approx(expected + 0.5 * 0.75, abs=1e-6)
    assert float(with_nll.nll) == pytest.approx(0.75)


def test_gradient_raises_the_chosen_and_lowers_the_rejected_log_probability() -> None:
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    out = iokd_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), torch.tensor([0.5]))
    out.loss.backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises pc, lowers pr
    assert pc.grad.item() == pytest.approx(-0.25)  # -beta * sigma(0) = -0.25


def test_beta_of_eq_32_is_larger_near_the_mean_and_smaller_for_outliers() -> None:
    cfg = LossConfig(kind="iokd", beta_base=0.1, lam=1.5)
    vectors = np.array(
        [
            [0.3, 0.1, 0.45, 0.15],
            [0.25, 0.15, 0.4, 0.2],
            [0.3, 0.1, 0.45, 0.15],
            [0.6, 0.15, 0.1, 0.15],
        ]
    )
    s_bar = mean_vector(vectors)
    typical = np.array([[0.3, 0.1, 0.45, 0.15]])
    outlier = np.array([[0.1, 0.6, 0.1, 0.2]])
    b_typ, b_out = sample_beta(typical, s_bar, cfg)[0], sample_beta(outlier, s_bar, cfg)[0]
    assert b_typ > b_out
    assert b_typ == pytest.approx(0.1 * (1 - 1.5 * angular_distance(typical[0], s_bar)))
    # At the mean itself beta is beta_base; it falls monotonically with the distance.
    assert sample_beta(s_bar[None, :], s_bar, cfg)[0] == pytest.approx(0.1)
    path = np.array([(1 - t) * s_bar + t * outlier[0] for t in np.linspace(0, 1, 6)])
    betas = sample_beta(path, s_bar, cfg)
    assert np.all(np.diff(betas) < 0)
    # A larger lambda widens the spread; lambda = 0 and plain DPO are constant.
    wide = sample_beta(outlier, s_bar, LossConfig(kind="iokd", beta_base=0.1, lam=1.9))[0]
    assert wide < b_out
    assert sample_beta(outlier, s_bar, LossConfig(lam=0.0))[0] == pytest.approx(0.1)
    dpo = sample_beta(np.vstack([typical, outlier]), s_bar, LossConfig(kind="dpo"))
    assert list(dpo) == [0.1, 0.1]


def test_beta_per_sample_means_and_invalid_lambda() -> None:
    cfg = LossConfig(beta_base=1.0, lam=1.0)
    s = np.array([[0.25] * 4, [0.25] * 4])
    means = np.array([[0.25] * 4, [0.6, 0.15, 0.1, 0.15]])
    beta = sample_beta(s, means, cfg)
    assert beta[0] == pytest.approx(1.0) and beta[1] < 1.0
    with pytest.raises(ValueError, match="non-positive"):
        sample_beta(np.array([[1.0, 0, 0, 0]]), np.array([0, 1.0, 0, 0]), LossConfig(lam=2.0))
    with pytest.raises(ValueError):
        LossConfig(kind="ipo")
    with pytest.raises(ValueError):
        LossConfig(beta_base=0.0)
    with pytest.raises(ValueError):
        LossConfig(nll_weight=-1.0)
