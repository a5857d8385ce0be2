"""GAE (eq. 42) against a hand-computed example."""

from __future__ import annotations

import torch

from xapp_composer.gae import compute_gae


def test_gae_hand_example() -> None:
    # One episode of 3 steps, gamma = 0.9, lambda = 0.8.
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    nv = torch.tensor([[1.0], [1.5], [0.0]])
    term = torch.tensor([[0.0], [0.0], [1.0]])
    adv, ret = compute_gae(r, v, nv, term, torch.zeros_like(r), 0.9, 0.8)
    d2 = 2.0 - 1.5  # terminal: no bootstrap
    d1 = 0.0 + 0.9 * 1.5 - 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(ret, adv + v)


def test_truncation_bootstraps_but_cuts_the_recursion() -> None:
    # Two rows of two episodes: the first is cut after row 0 (truncated), value 3.0 there.
    r = torch.tensor([[1.0, 1.0], [5.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    nv = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    term = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    trunc = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv, _ = compute_gae(r, v, nv, term, trunc, 1.0, 1.0)
    assert adv[0, 0] == 1.0 + 3.0  # bootstrapped, row 1 (another episode) not added
    assert adv[0, 1] == 1.0 + 0.0 + 0.0  # same episode continues: r0 + (r1 - v)... with v=0
