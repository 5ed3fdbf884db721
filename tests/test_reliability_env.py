"""Issue 12 regression tests whose fix came with the env v1 rewrite (``envs/env.py``,
``agents/callbacks.py``'s held-out evaluation). Each failed on the v0 env."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.env import ServerlessGPUEnv


@pytest.mark.parametrize("action", [np.float64(3.0), 3.7, np.array([3.0])])
def test_float_actions_are_refused_like_contains_says(action):
    """Item 7: a float action was truncated silently although ``contains()`` refused it."""
    env = ServerlessGPUEnv("small", episode_s=60, warmup_s=0)
    env.reset(seed=0)
    assert not env.action_space.contains(action)
    with pytest.raises(ValueError, match="action"):
        env.step(action)


def test_zero_gpu_price_gives_finite_rewards():
    """Item 3: ``prices.gpu_usd_per_hour: 0`` divided by zero in v0's reward normaliser; v1's
    reward is in dollars and divides by no price."""
    env = ServerlessGPUEnv("small", episode_s=60, prices__gpu_usd_per_hour=0)
    env.reset(seed=0)
    done = False
    while not done:
        valid = np.flatnonzero(env.action_masks())
        _, reward, _, done, info = env.step(int(env.np_random.choice(valid)))
        assert math.isfinite(reward) and math.isfinite(info["reward_components"]["cost"])


def test_eval_windows_start_at_or_after_the_cut_when_it_is_not_a_whole_minute():
    """The env floors start times to whole minutes; with a held-out cut at 5422.5 s
    (span_s 7230) that floor put held-out windows before the cut, in training time."""
    env = ServerlessGPUEnv("small", split="eval", span_s=7230)
    cut = env.scenario.window_bounds("eval")[0]
    starts = []
    for seed in range(200):
        env.reset(seed=seed)
        starts.append(env.start_s)
    assert min(starts) >= cut, (min(starts), cut)


def test_eval_grid_stays_on_multiples_after_resume():
    """Item 7: after --resume at step 12,345, evaluations with eval_freq 5,000 came at 17,345,
    22,345... instead of the first steps at or after 15,000, 20,000..."""
    from agents.callbacks import HeldOutEvalCallback

    class Model:
        num_timesteps = 12_345

    cb = HeldOutEvalCallback(lambda m: None, "small", {}, 5_000, 1, 0)
    done = []
    cb.evaluate = lambda: done.append(cb.num_timesteps)
    cb.model = Model()
    try:
        cb._init_callback()  # sets the grid's start, then reaches for a logger
    except AttributeError:  # no logger outside learn(): only the grid matters here
        pass
    for n in range(12_349, 25_002, 4):
        cb.num_timesteps = n
        cb._on_step()
    assert done == [15_001, 20_001, 25_001]
