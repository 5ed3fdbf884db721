"""The Gymnasium environment: checkers, determinism, masks, info, reward, vectorisation."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.env import CACHE_ACTIONS, CLUSTER_FEATURES, MODEL_FEATURES, ServerlessGPUEnv
from envs.scenarios import ConfigError

FAST = {"episode_s": 120}


def valid_random_action(env: ServerlessGPUEnv, rng: np.random.Generator) -> np.ndarray:
    mask = env.action_masks().reshape(env.K, -1)
    out = []
    for m in range(env.K):
        off = 0
        for n in env.nvec_model:
            out.append(rng.choice(np.flatnonzero(mask[m, off : off + n])))
            off += n
    return np.array(out)


def rollout(env: ServerlessGPUEnv, seed: int, steps: int | None = None, action_seed: int = 0):
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    trace = [obs]
    rewards, infos = [], []
    n = steps or env.scenario.n_steps
    for _ in range(n):
        obs, r, term, trunc, info = env.step(valid_random_action(env, rng))
        trace.append(obs)
        rewards.append(r)
        infos.append(info)
        if term or trunc:
            break
    return np.array(trace), np.array(rewards), infos


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@pytest.mark.parametrize("scenario", ["small", "paper", "azure"])
def test_checkers_pass_for_every_id_and_preset(env_id, scenario):
    env = gym.make(env_id, scenario=scenario, episode_s=60, disable_env_checker=True)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)


def test_same_seed_same_episode_and_other_seed_other_workload():
    env = ServerlessGPUEnv("small", **FAST)
    o1, r1, i1 = rollout(env, seed=3)
    o2, r2, i2 = rollout(env, seed=3)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert i1[-1]["episode_metrics"] == i2[-1]["episode_metrics"]
    env.reset(seed=4)
    a4 = env.sim.arrivals.copy()
    env.reset(seed=3)
    assert not np.array_equal(a4, env.sim.arrivals)


def test_policy_choices_never_change_the_workload():
    env = ServerlessGPUEnv("small", **FAST)
    _, _, i1 = rollout(env, seed=1, action_seed=0)
    a1 = env.sim.arrivals.copy()
    _, _, i2 = rollout(env, seed=1, action_seed=99)
    np.testing.assert_array_equal(a1, env.sim.arrivals)
    assert i1[-1]["requests_arrived"] == i2[-1]["requests_arrived"]


def test_episode_truncates_at_horizon_with_final_metrics():
    env = ServerlessGPUEnv("small", **FAST)
    _, _, infos = rollout(env, seed=0)
    assert len(infos) == env.scenario.n_steps == 12
    last = infos[-1]
    for key in (
        "p50_latency_s", "p99_latency_s", "slo_violation_rate", "cold_starts_local_mem",
        "cold_starts_remote_mem", "cold_starts_disk", "cold_starts_cloud",
    ):  # fmt: skip
        assert key in last
    for info in infos:
        for key in (
            "requests_arrived", "requests_completed", "requests_dropped", "requests_pending",
            "cold_starts", "cost_usd", "reward_components",
        ):  # fmt: skip
            assert key in info
        assert (
            info["requests_arrived"]
            == info["requests_completed"] + info["requests_dropped"] + info["requests_pending"]
        )
    costs = [i["cost_usd"] for i in infos]
    assert costs == sorted(costs)


def test_reward_is_weighted_sum_of_components():
    env = ServerlessGPUEnv("small", reward__slo=2.0, reward__drop=3.0, reward__cost=0.25, **FAST)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(env.scenario.n_steps):
        _, r, _, trunc, info = env.step(valid_random_action(env, rng))
        c = info["reward_components"]
        assert set(c) == {"slo", "drop", "cost"}
        assert all(v >= 0 for v in c.values())
        assert r == pytest.approx(-(2.0 * c["slo"] + 3.0 * c["drop"] + 0.25 * c["cost"]))
        if trunc:
            break


def test_cost_component_known_answer_one_gpu_for_one_step():
    env = ServerlessGPUEnv("small", **FAST)
    env.reset(seed=0)
    act = env._noop.copy()
    act[0] = int(np.flatnonzero(env.deltas == 1)[0])  # +1 instance of model 0
    _, _, _, _, info = env.step(act)
    # One of the cluster's 4 GPUs held for the whole step; no cache memory held yet (the copy
    # lands during the step, so a little pool memory is billed too).
    assert info["reward_components"]["cost"] == pytest.approx(1 / env.G, rel=0.02)


def test_observation_layout_and_padding():
    env = ServerlessGPUEnv("small")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (env.K * len(MODEL_FEATURES) + len(CLUSTER_FEATURES),)
    assert obs.dtype == np.float32
    per_model = obs[: env.K * len(MODEL_FEATURES)].reshape(env.K, -1)
    assert per_model[: env.M, 0].tolist() == [1.0] * env.M
    assert np.all(per_model[env.M :] == 0)  # small has 3 models in 4 slots
    obs2, *_ = env.step(env._noop)
    assert obs2 is not obs and np.all(np.isfinite(obs2))


def test_masked_action_is_a_counted_noop():
    env = ServerlessGPUEnv("small", **FAST)
    env.reset(seed=0)
    mask = env.action_masks().reshape(env.K, -1)
    act = env._noop.copy()
    # Scale-in of model 0 with no instance is masked.
    neg = int(np.flatnonzero(env.deltas < 0)[0])
    assert not mask[0, neg]
    act[0] = neg
    # The padding slot (model 3) may only hold: ask it to prefetch.
    act[4 * 3 + 3] = CACHE_ACTIONS.index("prefetch")
    _, _, _, _, info = env.step(act)
    assert info["invalid_actions"] == 2
    assert info["cold_starts"] == 0


def test_scale_out_respects_gpu_capacity():
    env = ServerlessGPUEnv("small", **FAST)
    env.reset(seed=0)
    big = int(np.argmax(env.deltas))
    act = env._noop.copy()
    for m in range(env.M):
        act[4 * m] = big
    env.step(act)
    total = sum(env.sim.instance_count(m) for m in range(env.M))
    assert total == env.G  # 3 models x +4 asked, 4 GPUs exist
    mask = env.action_masks().reshape(env.K, -1)
    assert not mask[: env.M, : len(env.deltas)][:, env.deltas > 0].any()


def test_bad_actions_raise_clear_errors():
    env = ServerlessGPUEnv("small", **FAST)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env._noop)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=int))
    bad = env._noop.copy()
    bad[0] = 99
    with pytest.raises(ValueError, match="outside"):
        env.step(bad)


def test_held_out_windows_never_overlap_training_windows():
    tr = ServerlessGPUEnv("small", split="train")
    ev = ServerlessGPUEnv("small", split="eval")
    train_ends = []
    for s in range(20):
        tr.reset(seed=s)
        train_ends.append(tr.start_s + tr.scenario.episode_s)
        ev.reset(seed=s)
        assert ev.start_s >= tr.scenario.span_s * (1 - tr.scenario.held_out_fraction)
    assert max(train_ends) <= tr.scenario.span_s * (1 - tr.scenario.held_out_fraction)


def test_pickle_round_trip_continues_identically():
    env = ServerlessGPUEnv("small", **FAST)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(3):
        env.step(valid_random_action(env, rng))
    clone = pickle.loads(pickle.dumps(env))
    act = valid_random_action(env, rng)
    a = env.step(act)
    b = clone.step(act)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_runs_under_subproc_vec_env_and_make_vec():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # "module:id" makes each worker process import envs (and so register the id) itself.
    venv = make_vec_env(
        "envs:coldstart/ServerlessGPU-v0",
        n_envs=2,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"scenario": "small", **FAST},
    )
    venv.reset()
    for _ in range(3):
        venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
    masks = venv.env_method("action_masks")
    assert len(masks) == 2 and masks[0].dtype == bool
    venv.close()
    genv = gym.make_vec("coldstart/ServerlessGPU-v0", num_envs=2, scenario="small", **FAST)
    genv.reset(seed=0)
    genv.step(genv.action_space.sample())
    genv.close()


def test_render_ansi_and_rgb():
    env = ServerlessGPUEnv("small", render_mode="ansi", **FAST)
    env.reset(seed=0)
    assert "bert-base" in env.render()
    env = ServerlessGPUEnv("small", render_mode="rgb_array", **FAST)
    env.reset(seed=0)
    act = env._noop.copy()
    act[0] = int(np.flatnonzero(env.deltas == 1)[0])
    env.step(act)
    img = env.render()
    assert img.shape == ((env.G + env.M) * 16, 256, 3) and img.dtype == np.uint8
    assert (img[:16] != 255).any()  # the loading instance is drawn


def test_unknown_scenario_and_bad_override_name_the_problem():
    with pytest.raises(ConfigError, match="Did you mean 'small'"):
        ServerlessGPUEnv("smal")
    with pytest.raises(ConfigError, match="episode_s"):
        ServerlessGPUEnv("small", episode_s=-5)
    with pytest.raises(ConfigError, match="unknown key 'episode_len'"):
        ServerlessGPUEnv("small", episode_len=5)
    with pytest.raises(ConfigError, match="split"):
        ServerlessGPUEnv("small", split="test")
