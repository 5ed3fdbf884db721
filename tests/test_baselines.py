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
from baselines.base import CLOUD, FASTEST, HOLD, KEEP, LOCALITY, PREFETCH, nearest_delta
from envs import layout as L

ENV_ID = envs.ENV_ID
NAMES = list(POLICIES)


def make_env(scenario="small", **overrides):
    return gym.make(ENV_ID, scenario=scenario, split="eval", disable_env_checker=True, **overrides)


def assert_in_mask(u, action):
    """v1: one Discrete action for the focused model, which must be valid in its mask now."""
    a = int(np.asarray(action).reshape(()))
    assert 0 <= a < u.layout.n
    assert u.action_masks()[a], f"model {u.focus}: action {u.layout.name(a)} is masked"


@pytest.mark.parametrize("name", NAMES)
def test_actions_inside_mask_over_an_episode(name):
    env = make_env(episode_s=300)
    u = env.unwrapped
    pol = make_policy(name, env=env)
    obs, _ = env.reset(seed=1)
    done, start, info, n = False, True, {}, 0
    while not done:
        action, _ = pol.predict(obs, episode_start=start)
        start = False
        assert np.shape(action) == env.action_space.shape == ()
        assert_in_mask(u, action)  # every step, every model in turn
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
        n += 1
    assert n == u.scenario.n_steps * u.M
    assert info["invalid_actions"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_two_intervals_on_paper_inside_mask(name):
    env = make_env("paper", episode_s=60)
    u = env.unwrapped
    pol = make_policy(name, env=env)
    obs, _ = env.reset(seed=0)
    for _ in range(2 * u.M):
        action, _ = pol.predict(obs)
        assert_in_mask(u, action)
        obs, _, _, _, info = env.step(action)
    assert info["invalid_actions"] == 0


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
    assert a.shape == (2,)
    for i, e in enumerate(venv.envs):
        assert_in_mask(e.unwrapped, a[i])
    single = make_policy("hierarchical", env=venv.envs[0])
    a0, _ = single.predict(obs[0], episode_start=True)
    assert np.shape(a0) == ()
    assert a0 == a[0]
    with pytest.raises(ValueError, match="bound env"):
        single.predict(obs)


def test_episode_start_resets_per_env_state():
    env = make_env(episode_s=120)
    u = env.unwrapped
    pol = make_policy("keepalive", env=env)
    obs, _ = env.reset(seed=0)
    for _ in range(3 * u.M):  # three control intervals: one plan per interval, not per step
        a, _ = pol.predict(obs)
        obs, *_ = env.step(a)
    pol.predict(obs)  # the fourth interval's plan
    assert pol._state[0]["t"] == 3 and len(pol._state[0]["window"]) == 4
    pol.predict(obs, episode_start=True)
    assert pol._state[0]["t"] == 0 and len(pol._state[0]["window"]) == 1
    pol.reset()
    assert pol._state == {}


class NoSimProxy:
    """An env that exposes everything but refuses to show its simulator."""

    def __init__(self, env):
        object.__setattr__(self, "_env", env.unwrapped)

    def __getattr__(self, name):
        if name == "sim":
            raise AssertionError("an observation-only policy read the simulator")
        return getattr(self._env, name)


@pytest.mark.parametrize("name", [n for n in NAMES if not POLICIES[n].privileged])
def test_observation_only_policies_never_read_the_simulator(name):
    env = make_env(episode_s=120)
    pol = make_policy(name, env=NoSimProxy(env))
    obs, _ = env.reset(seed=0)
    for t in range(12 * env.unwrapped.M):
        action, _ = pol.predict(obs, episode_start=t == 0)
        obs, *_ = env.step(action)


def test_no_policy_is_privileged_and_none_can_read_the_sim():
    # v1 offers ServerlessLLM's startup-time placement as the "fastest" rule to every policy,
    # so serverlessllm no longer reads the simulator (it was the one privileged policy in v0).
    assert [n for n in NAMES if POLICIES[n].privileged] == []
    pol = make_policy("serverlessllm", env=make_env())
    assert pol.datapath.placement == FASTEST
    with pytest.raises(RuntimeError, match="not privileged"):
        pol.sim(0)
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
        make_policy("baseline").predict(np.zeros(L.N_OBS, dtype=np.float32))


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
    cache_ok = np.array([True, True, True, False])  # prefetch impossible
    two = int(np.flatnonzero(deltas == 2)[0])
    # Placement and source are always valid and kept; scale-out masked -> nearest valid (0).
    assert pol.legalize([two, LOCALITY, CLOUD, PREFETCH], deltas <= 0, cache_ok) == [
        f.zero_delta, LOCALITY, CLOUD, KEEP,
    ]  # fmt: skip
    no_keep = np.array([True, True, False, False])
    assert pol.legalize([two, 0, 0, PREFETCH], np.ones(6, dtype=bool), no_keep)[3] == HOLD
    assert pol.legalize([two, 0, 0, KEEP], np.ones(6, dtype=bool), no_keep) == [two, 0, 0, HOLD]
    noop = pol.noop()
    assert noop.shape == (f.M, 4)
    assert all(f.layout.encode(*row) == f.layout.noop for row in noop)


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
