"""The vectorised MultiDiscrete head computes exactly SB3's product of categoricals.

(v1's env has a Discrete action space, so the head is no longer trained on the env here; it
stays available for MultiDiscrete spaces through ``agents.algos.CUSTOM_POLICIES``.)"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.distributions import MultiCategoricalDistribution

from agents.distributions import FastMultiCategoricalDistribution

DIMS = [6, 5, 2, 4, 3]


def test_log_prob_entropy_mode_match_sb3():
    th.manual_seed(0)
    logits = th.randn(32, sum(DIMS))
    ref = MultiCategoricalDistribution(DIMS).proba_distribution(logits)
    fast = FastMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    actions = ref.sample()
    th.testing.assert_close(fast.log_prob(actions), ref.log_prob(actions))
    th.testing.assert_close(fast.entropy(), ref.entropy())
    th.testing.assert_close(fast.mode(), ref.mode())


def test_gradients_are_finite_with_padded_choices():
    logits = th.randn(8, sum(DIMS), requires_grad=True)
    fast = FastMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    actions = fast.sample()
    loss = -(fast.log_prob(actions).mean() + 0.01 * fast.entropy().mean())
    loss.backward()
    assert th.isfinite(logits.grad).all()


def test_samples_follow_the_categoricals_and_stay_in_range():
    th.manual_seed(1)
    logits = th.randn(1, sum(DIMS)).repeat(20000, 1)
    fast = FastMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    s = fast.sample()
    assert s.shape == (20000, len(DIMS))
    off = 0
    for j, n in enumerate(DIMS):
        assert int(s[:, j].min()) >= 0 and int(s[:, j].max()) < n
        p = th.softmax(logits[0, off : off + n], dim=0).numpy()
        freq = np.bincount(s[:, j].numpy(), minlength=n) / len(s)
        np.testing.assert_allclose(freq, p, atol=0.015)
        off += n
