"""GAE (eq. 42) against hand-computed examples.

Every reward, value and bootstrap value is non-zero, so each term of the recursion shows
in the expected numbers: a recursion that drops the carried advantage, ignores lambda,
runs across an episode boundary or forgets to bootstrap gives other numbers.
"""

from __future__ import annotations

import torch

from xapp_composer.gae import compute_gae

GAMMA, LAM = 0.9, 0.8
GL = GAMMA * LAM


def test_gae_hand_example_with_an_episode_boundary() -> None:
    # Column 0: an episode over rows 0-1 (terminated after row 1; the next value given
    # there must be ignored), then a new one over rows 2-3 (terminated after row 3).
    # Column 1: one episode over rows 0-3.
    r = torch.tensor([[1.0, 0.5], [2.0, 1.5], [-1.0, 2.5], [3.0, -0.5]])
    v = torch.tensor([[0.5, 1.0], [1.0, 2.0], [0.2, 0.5], [0.4, 1.0]])
    nv = torch.tensor([[1.0, 2.0], [9.9, 0.5], [0.4, 1.0], [7.7, 7.7]])
    term = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    adv, ret = compute_gae(r, v, nv, term, torch.zeros_like(r), GAMMA, LAM)

    d3 = 3.0 - 0.4  # terminal: no bootstrap
    d2 = -1.0 + GAMMA * 0.4 - 0.2
    d1 = 2.0 - 1.0  # terminal: no bootstrap, and row 2 belongs to the next episode
    d0 = 1.0 + GAMMA * 1.0 - 0.5
    a3 = d3
    a2 = d2 + GL * a3
    a1 = d1
    a0 = d0 + GL * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2, a3]))

    e3 = -0.5 - 1.0
    e2 = 2.5 + GAMMA * 1.0 - 0.5
    e1 = 1.5 + GAMMA * 0.5 - 2.0
    e0 = 0.5 + GAMMA * 2.0 - 1.0
    b3 = e3
    b2 = e2 + GL * b3
    b1 = e1 + GL * b2
    b0 = e0 + GL * b1
    torch.testing.assert_close(adv[:, 1], torch.tensor([b0, b1, b2, b3]))
    torch.testing.assert_close(ret, adv + v)


def test_truncation_bootstraps_but_cuts_the_recursion() -> None:
    # Column 0 is cut after row 0 (truncated; the value where it was cut is 3.0) and row 1
    # starts another episode; column 1 is one episode over both rows. gamma = lambda = 1.
    r = torch.tensor([[1.0, 1.0], [5.0, 2.0]])
    v = torch.tensor([[0.5, 0.5], [1.5, 1.5]])
    nv = torch.tensor([[3.0, 1.5], [0.0, 0.0]])
    term = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    trunc = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv, _ = compute_gae(r, v, nv, term, trunc, 1.0, 1.0)
    assert adv[1, 0] == 5.0 - 1.5
    assert adv[0, 0] == 1.0 + 3.0 - 0.5  # bootstrapped; row 1 (another episode) not added
    assert adv[1, 1] == 2.0 - 1.5
    assert adv[0, 1] == (1.0 + 1.5 - 0.5) + (2.0 - 1.5)  # the episode continues
