"""Per-model accounting and the per-model VecEnv (agents.model_vec_env): the split of the
reward adds up to the env's, and each sub-env sees what the env shows its model."""

from __future__ import annotations

import numpy as np
import pytest

from agents.model_vec_env import ModelsVecEnv
from envs import layout as L
from envs.env import ServerlessGPUEnv


def _random_masked(rng, masks):
    return np.array([rng.choice(np.flatnonzero(m)) for m in masks])


@pytest.mark.parametrize("scenario", ["small", "paper", "azure"])
def test_cost_by_model_sums_to_the_cost(scenario):
    env = ServerlessGPUEnv(scenario, episode_s=300)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(600):
        _, _, _, trunc, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        by = env.sim.cost_usd_by_model()
        assert (by >= -1e-12).all()
        assert by.sum() == pytest.approx(env.sim.cost_usd(), rel=1e-9, abs=1e-12)
        if trunc:
            env.reset()


def test_each_model_is_charged_its_own_gpu_time_known_answer():
    """Two toy models on one host (no host cache); only model a gets requests (one at 1 s, a
    cloud cold start at once): a holds the GPU from 1 s, b is charged nothing."""
    from conftest import DISK, host, model, toy_config, toy_env

    cfg = toy_config(hosts=[host(disk_gb_per_s=DISK, disk_cache_gb=0.0, n_gpus=2)],
                     models=[model("a"), model("b")], host_cache=False)  # fmt: skip
    env = toy_env(cfg, [1.0], [], episode_s=60.0)
    env.reset(seed=0)
    sim = env.sim
    for _ in range(3 * env.M):  # 30 s, no action: the platform's autostart alone
        env.step(env.layout.noop)
    gpu = sim.gpu_seconds_by_model()
    assert gpu[0] == pytest.approx(30.0 - 1.0) and gpu[1] == 0.0
    assert sim.cost_usd_by_model()[1] == 0.0
    assert sim.cost_usd_by_model()[0] == pytest.approx(sim.cost_usd())


def test_rewards_split_per_model_and_sum_to_the_envs():
    v = ModelsVecEnv("paper", n_sims=1, seed=5, overrides={"episode_s": 300})
    ref = ServerlessGPUEnv("paper", episode_s=300)
    obs = v.reset()
    ref.reset(seed=5)
    assert obs.shape == (18, L.N_OBS) and v.num_envs == 18
    rng = np.random.default_rng(0)
    for _ in range(25):  # of the episode's 30 intervals
        np.testing.assert_allclose(obs[0], ref._observe(), rtol=1e-6)  # ref is focused on 0
        for m in range(ref.M):
            np.testing.assert_allclose(obs[m][: len(L.MODEL_FEATURES)], ref.model_features(m), rtol=1e-6)
            assert obs[m][-1] == pytest.approx(m / ref.M)  # the focus feature
        a = _random_masked(rng, v.action_masks())
        v.step_async(a)
        obs, r, done, infos = v.step_wait()
        r_env = sum(ref.step(int(x))[1] for x in a)
        assert r.sum() == pytest.approx(r_env, rel=1e-5, abs=1e-3)
        assert r.shape == (18,) and not done.any()


def test_episode_end_is_reported_on_every_sub_env_and_resets():
    v = ModelsVecEnv("small", n_sims=2, overrides={"episode_s": 60})
    v.reset()
    n = ServerlessGPUEnv("small", episode_s=60).scenario.n_steps
    noop = np.full(v.num_envs, v.envs[0].layout.noop)
    for i in range(n):
        v.step_async(noop)
        obs, _, done, infos = v.step_wait()
        assert done.all() == (i == n - 1) and done.any() == done.all()
    assert all("terminal_observation" in d for d in infos)
    # Each simulator's episode is reported once, on its first sub-env, with the env's return.
    M = v.M
    assert [i for i, d in enumerate(infos) if "episode" in d] == [0, M]
    assert [i for i, d in enumerate(infos) if "p99_latency_s" in d] == [0, M]
    assert infos[0]["latencies_s"].dtype == np.float32
    assert v.envs[0].t == 0  # reset for the next episode


def test_the_reported_return_is_the_envs_episode_reward():
    v = ModelsVecEnv("paper", n_sims=1, seed=3, overrides={"episode_s": 100})
    ref = ServerlessGPUEnv("paper", episode_s=100)
    v.reset()
    ref.reset(seed=3)
    noop = np.full(v.num_envs, v.envs[0].layout.noop)
    total, infos, done = 0.0, [], np.zeros(1, dtype=bool)
    while not done.any():
        v.step_async(noop)
        _, _, done, infos = v.step_wait()
        total += sum(ref.step(int(a))[1] for a in noop)
    assert infos[0]["episode"]["r"] == pytest.approx(total, rel=1e-5, abs=1e-3)


def test_maskable_ppo_trains_on_it():
    from sb3_contrib import MaskablePPO

    v = ModelsVecEnv("small", n_sims=1, overrides={"episode_s": 120})
    model = MaskablePPO("MlpPolicy", v, n_steps=16, batch_size=24, n_epochs=1, device="cpu")
    model.learn(48)
    assert model.num_timesteps >= 48
