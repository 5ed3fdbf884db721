"""Reference policies: masks, the SB3 interface, batch shapes, per-env state, known windows."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401
from baselines import POLICIES, HybridHistogram, Overprovision, make_policy
from baselines.base import HOLD, KEEP, LOCALITY, PREFETCH, nearest_delta

ENV_ID = "coldstart/ServerlessGPU-v0"
NAMES = list(POLICIES)


def make_env(scenario="small", **overrides):
    return gym.make(ENV_ID, scenario=scenario, split="eval", disable_env_checker=True, **overrides)


def assert_in_mask(u, action):
    mask = u.action_masks().reshape(u.K, -1)
    off = np.r_[0, np.cumsum(u.nvec_model[:-1])]
    a = np.asarray(action).reshape(u.K, 4)
    for m in range(u.K):
        for e in range(4):
            assert 0 <= a[m, e] < u.nvec_model[e]
            assert mask[m, off[e] + a[m, e]], f"slot {m} entry {e} choice {a[m, e]} is masked"


@pytest.mark.parametrize("name", NAMES)
def test_actions_inside_mask_over_an_episode(name):
    env = make_env(episode_s=300)
    u = env.unwrapped
    pol = make_policy(name, env=env)
    obs, _ = env.reset(seed=1)
    done, start, info = False, True, {}
    while not done:
        action, _ = pol.predict(obs, episode_start=start)
        start = False
        assert action.shape == env.action_space.shape
        assert_in_mask(u, action)
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
    assert info["invalid_actions"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_one_step_on_paper_inside_mask(name):
    env = make_env("paper", episode_s=60)
    pol = make_policy(name, env=env)
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        action, _ = pol.predict(obs)
        assert_in_mask(env.unwrapped, action)
        obs, *_ = env.step(action)


@pytest.mark.parametrize("name", NAMES)
def test_sb3_evaluate_policy_accepts_every_baseline(name):
    env = Monitor(make_env(episode_s=120))
    pol = make_policy(name, env=env)
    mean, std = evaluate_policy(pol, env, n_eval_episodes=1, warn=False)
    assert np.isfinite(mean) and std == 0.0


def test_batch_predict_matches_shapes_and_single_envs():
    venv = DummyVecEnv([lambda: make_env(episode_s=120), lambda: make_env(episode_s=120)])
    venv.seed(3)
    obs = venv.reset()
    pol = make_policy("hierarchical").bind(venv)
    a, _ = pol.predict(obs, episode_start=np.ones(2, dtype=bool))
    assert a.shape == (2, venv.action_space.shape[0])
    for i, e in enumerate(venv.envs):
        assert_in_mask(e.unwrapped, a[i])
    single = make_policy("hierarchical", env=venv.envs[0])
    a0, _ = single.predict(obs[0], episode_start=True)
    assert a0.shape == (venv.action_space.shape[0],)
    np.testing.assert_array_equal(a0, a[0])


def test_episode_start_resets_per_env_state():
    env = make_env(episode_s=120)
    pol = make_policy("keepalive", env=env)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        pol.predict(obs)
    assert pol._state[0]["t"] == 3 and len(pol._state[0]["window"]) == 3
    pol.predict(obs, episode_start=True)
    assert pol._state[0]["t"] == 1 and len(pol._state[0]["window"]) == 1
    pol.reset()
    assert pol._state == {}


class NoSimProxy:
    """An env that exposes the scenario and masks but refuses to show its simulator."""

    def __init__(self, env):
        self._env = env.unwrapped
        self.scenario = self._env.scenario

    def action_masks(self):
        return self._env.action_masks()

    @property
    def sim(self):
        raise AssertionError("an observation-only policy read the simulator")


@pytest.mark.parametrize("name", [n for n in NAMES if not POLICIES[n].privileged])
def test_observation_only_policies_never_read_the_simulator(name):
    env = make_env(episode_s=120)
    pol = make_policy(name, env=NoSimProxy(env))
    obs, _ = env.reset(seed=0)
    for t in range(12):
        action, _ = pol.predict(obs, episode_start=t == 0)
        obs, *_ = env.step(action)


def test_only_serverlessllm_is_privileged_and_others_cannot_read_the_sim():
    assert [n for n in NAMES if POLICIES[n].privileged] == ["serverlessllm"]
    pol = make_policy("baseline", env=make_env())
    with pytest.raises(RuntimeError, match="not privileged"):
        pol.sim(0)


def test_unknown_policy_lists_names_and_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'hierarchical'") as e:
        make_policy("hierarchial")
    assert "keepalive" in str(e.value)
    with pytest.raises(ValueError, match="policy 'keepalive'"):
        make_policy("keepalive", keep_alive=3)  # misspelt parameter
    with pytest.raises(RuntimeError, match="bind"):
        make_policy("baseline").predict(np.zeros(61, dtype=np.float32))


def test_nearest_delta_and_legalize():
    deltas = np.array([-4, -1, 0, 1, 2, 4])
    assert deltas[nearest_delta(3, deltas)] == 2  # tie: the smaller change
    assert deltas[nearest_delta(9, deltas)] == 4
    assert deltas[nearest_delta(-2, deltas)] == -1
    only_zero_or_down = np.array([True, True, True, False, False, False])
    assert deltas[nearest_delta(3, deltas, only_zero_or_down)] == 0
    env = make_env()
    env.reset(seed=0)
    pol = make_policy("baseline", env=env)
    f = pol.facts
    mask = pol.mask(0).copy()
    c0 = f.offsets[3]
    mask[0, c0 + PREFETCH] = False  # prefetch impossible
    mask[0, f.offsets[1] + 3] = False  # host 0 full
    mask[0, f.offsets[0] : f.offsets[0] + f.nvec[0]] = deltas <= 0  # no scale-out
    choice = pol.noop()
    choice[0] = [np.flatnonzero(deltas == 2)[0], 3, 0, PREFETCH]
    choice[3, 3] = PREFETCH  # a padding slot
    out = pol.legalize(choice, mask)
    assert list(out[0]) == [f.zero_delta, LOCALITY, 0, KEEP]
    assert out[3, 3] == HOLD


def test_histogram_windows_known_answers():
    env = make_env()
    pol = HybridHistogram(env=env)
    st = pol.new_state()
    assert pol.windows(st, 0) == (0.0, 4 * 3600.0)  # empty: not representative
    for _ in range(5):
        pol.record(st, 0, 3 * 60 + 10)  # every idle time in bin 3
    pre, keep = pol.windows(st, 0)
    assert pre == pytest.approx(3 * 60 * 0.9) and keep == pytest.approx(4 * 60 * 1.1)
    st["bins"][1] = 1  # one count in every bin: CV 0 -> not representative
    assert pol.windows(st, 1) == (0.0, 4 * 3600.0)
    for _ in range(3):
        pol.record(st, 2, 5 * 3600.0)  # out of range -> last idle time with 15% margin
    pre, keep = pol.windows(st, 2)
    assert pre == pytest.approx(5 * 3600 * 0.85) and keep == pytest.approx(5 * 3600 * 0.3)


def test_overprovision_fills_the_cluster_with_at_least_one_per_model():
    env = make_env()
    pol = Overprovision(env=env)
    f = pol.facts
    assert pol.counts.sum() == f.G and np.all(pol.counts >= 1)
    assert np.argmax(pol.counts) == int(np.argmax(1 / f.capacity_rps))  # the heaviest model
    assert list(Overprovision(env=env, instances={"t5-3b": 2}).counts) == [1, 1, 2]
    with pytest.raises(ValueError, match="unknown model"):
        Overprovision(env=env, instances={"nope": 1})


def test_random_policy_is_seeded():
    env = make_env()
    obs, _ = env.reset(seed=0)
    a = make_policy("random", env=env, seed=7).predict(obs)[0]
    b = make_policy("random", env=env, seed=7).predict(obs)[0]
    np.testing.assert_array_equal(a, b)
