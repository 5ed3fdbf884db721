"""Unit tests of agents/: algorithm table, hyperparameter files, wrappers, saving and loading."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import envs  # noqa: F401  (registers the ids)
from agents.algos import ALGOS, get_algo, resolve_policy
from agents.hyperparams import load_hyperparams, parse_assignments, resolve, safe_eval
from agents.loading import AgentPolicy, load_agent, read_meta, save_agent, stats_path
from agents.wrappers import ENV_ID, EnvFactory, EpisodeLatencies

SHORT = {"episode_s": 200}


def make(**kw):
    return gym.make(ENV_ID, scenario="small", **{**SHORT, **kw})


# ------------------------------------------------------------------------------ algorithms ----
def test_algo_table_names_and_suggestion():
    assert set(ALGOS) == {"ppo", "a2c", "dqn", "maskable_ppo", "recurrent_ppo"}
    assert get_algo("Maskable-PPO").name == "maskable_ppo"
    with pytest.raises(ValueError) as e:
        get_algo("ppo2")
    msg = str(e.value)
    assert "\n" not in msg and "maskable_ppo" in msg and "Did you mean 'ppo'" in msg


def test_custom_policy_only_where_it_applies():
    from agents.distributions import FastMultiDiscretePolicy

    assert resolve_policy(get_algo("ppo"), "FastMultiDiscretePolicy") is FastMultiDiscretePolicy
    assert resolve_policy(get_algo("ppo"), "MlpPolicy") == "MlpPolicy"
    with pytest.raises(ValueError, match="not dqn"):
        resolve_policy(get_algo("dqn"), "FastMultiDiscretePolicy")


# ------------------------------------------------------------------------- hyperparameters ----
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_shipped_hyperparameter_files_resolve(algo):
    hp = load_hyperparams(algo, ENV_ID)
    assert hp.n_timesteps >= 1 and hp.n_envs >= 1
    assert isinstance(hp.kwargs["policy_kwargs"], dict)


def test_safe_eval_accepts_zoo_strings_and_rejects_code():
    v = safe_eval(
        "dict(net_arch=dict(pi=[64, 64], vf=[32]), activation_fn=nn.Tanh, ortho_init=False)"
    )
    assert v == {
        "net_arch": {"pi": [64, 64], "vf": [32]},
        "activation_fn": th.nn.Tanh,
        "ortho_init": False,
    }
    assert safe_eval("{'a': -1.5, 'b': (1, 2)}") == {"a": -1.5, "b": (1, 2)}
    for bad in (
        "__import__('os').system('true')",
        "open('x')",
        "nn.Module",
        "[x for x in y]",
        "dict(**a)",
    ):
        with pytest.raises(ValueError):
            safe_eval(bad)


def test_policy_kwargs_as_yaml_mapping_and_schedules(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text(
        "default:\n  n_envs: 2\n  learning_rate: lin_1e-3\n  normalize: false\n"
        "  policy_kwargs: {net_arch: [32], activation_fn: nn.ReLU}\n"
    )
    hp = load_hyperparams("ppo", ENV_ID, f, overrides={"n_steps": 64})
    assert hp.kwargs["policy_kwargs"] == {"net_arch": [32], "activation_fn": th.nn.ReLU}
    assert hp.kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert hp.kwargs["n_steps"] == 64 and hp.n_envs == 2 and hp.normalize is None


def test_env_block_wins_over_default(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text(f"default:\n  n_steps: 8\n{ENV_ID}:\n  n_steps: 16\n")
    assert load_hyperparams("ppo", ENV_ID, f).kwargs["n_steps"] == 16


def test_a_trace_block_wins_over_its_scenario_block_only_for_that_trace(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text(f"default:\n  n_steps: 8\n{ENV_ID}:paper:\n  n_steps: 16\n"
                 f"{ENV_ID}:paper:trace-azure2019:\n  n_steps: 32\n")  # fmt: skip

    def n_steps(scenario, trace):
        return load_hyperparams("ppo", ENV_ID, f, scenario=scenario, trace=trace).kwargs["n_steps"]

    assert n_steps("paper", "azure2019") == 32
    assert n_steps("paper", "/data/azure2019.csv.gz") == 32  # a path: its name up to the dot
    assert n_steps("paper", "azure_llm_2023") == 16  # another trace: the scenario's block
    assert n_steps("paper", None) == 16
    assert n_steps("small", "azure2019") == 8  # another cluster: not that trace's block
    assert n_steps(None, "azure2019") == 8


@pytest.mark.parametrize(
    "text, match",
    [
        ("default:\n  n_step: 8\n", "Did you mean 'n_steps'"),
        ("default:\n  policy_kwargs: \"exec('x')\"\n", "policy_kwargs"),
        ("default:\n  n_envs: 0\n", "n_envs must be an integer"),
        ("default:\n  normalize: {norm_ob: true}\n", "Did you mean 'norm_obs'"),
        ("other-env:\n  n_steps: 8\n", "no 'coldstart/ServerlessGPU-v1' or 'default' block"),
        ("default: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_hyperparameter_files_name_the_problem(tmp_path, text, match):
    f = tmp_path / "hp.yml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_hyperparams("ppo", ENV_ID, f)
    assert "\n" not in str(e.value)


def test_missing_hyperparameter_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_hyperparams("ppo", ENV_ID, tmp_path / "nope.yml")


def test_parse_assignments():
    assert parse_assignments(["a=1", "b=x", "c=[1, 2]", "d=", "e=5e-4"], "o") == {
        "a": 1, "b": "x", "c": [1, 2], "d": None, "e": 5e-4,
    }  # fmt: skip
    # YAML 1.1 reads 1e-4 as a string; the resolved hyperparameter is the number.
    assert resolve("ppo", {"learning_rate": "1e-4"}).kwargs["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_assignments(["novalue"], "override")


def test_resolve_rejects_bad_normalize():
    with pytest.raises(ValueError, match="normalize"):
        resolve("ppo", {"normalize": 3})
    assert resolve("ppo", {"normalize": True}).normalize == {}


# -------------------------------------------------------------------------------- wrappers ----
def test_episode_latencies_on_final_step_only():
    env = EpisodeLatencies(make(), max_values=50)
    env.reset(seed=1)
    done, info, n = False, {}, 0
    while not done:
        _, _, term, trunc, info = env.step(env.unwrapped.layout.noop)
        done = term or trunc
        n += 1
        if not done:
            assert "latencies_s" not in info
    lat = info["latencies_s"]
    assert lat.dtype == np.float32 and lat.size <= 50 and np.all(np.diff(lat) >= 0)


def test_env_factory_pickles_and_masks():
    f = EnvFactory("small", "train", SHORT, masked=True)
    env = pickle.loads(pickle.dumps(f))()
    env.reset(seed=0)
    assert env.action_masks().shape == (env.unwrapped.layout.n,) == (env.action_space.n,)
    np.testing.assert_array_equal(env.action_masks(), env.unwrapped.action_masks())


# ------------------------------------------------------------------ maskable PPO and loading ----
@pytest.fixture(scope="module")
def maskable(tmp_path_factory):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([EnvFactory("small", "train", SHORT, masked=True)]))
    spec = get_algo("maskable_ppo")
    model = spec.cls("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(128)
    model.coldstart_meta = {"algo": "maskable_ppo", "normalize": True, "discrete_actions": None}
    path = save_agent(model, tmp_path_factory.mktemp("agent") / "model.zip", venv)
    return model, venv, path


def test_maskable_ppo_never_takes_a_masked_action(maskable):
    model, _, path = maskable
    agent = load_agent(path)
    env = make(split="eval", warmup_s=0)  # an empty start: scale-in is masked at first
    agent.bind(env)
    u = env.unwrapped
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        done, n_masked_somewhere = False, 0
        while not done:
            mask = u.action_masks()
            n_masked_somewhere += int((~mask).any())
            action, _ = agent.predict(obs, deterministic=False)
            assert mask[int(action)], f"masked action {u.layout.name(int(action))}"
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
        assert info["invalid_actions"] == 0
        assert n_masked_somewhere > 0  # the masks did constrain something


def test_load_agent_restores_algorithm_and_normalisation(maskable, tmp_path):
    model, venv, path = maskable
    assert stats_path(path).is_file() and not list(path.parent.glob(".*tmp"))
    agent = load_agent(path.parent)  # a run folder works too
    assert isinstance(agent, AgentPolicy) and agent.name == "maskable_ppo"
    assert type(agent.model).__name__ == "MaskablePPO"
    obs = make().reset(seed=0)[0]
    np.testing.assert_allclose(agent.normalize(obs), venv.normalize_obs(obs), rtol=1e-6)
    batch = np.stack([obs, obs])
    masks = np.zeros((2, venv.action_space.n), dtype=bool)
    masks[:, 5] = True  # one valid action: MaskablePPO must take it
    action, _ = agent.predict(batch, action_masks=masks)
    assert action.shape == (2,) and (action == 5).all()
    # Without the meta (a zip saved elsewhere), the algorithm is told from the policy class.
    model.coldstart_meta = None
    bare = save_agent(model, tmp_path / "bare.zip", None)
    assert read_meta(bare)["algo"] == "maskable_ppo"


@pytest.mark.parametrize("kind", ["missing", "not_zip", "empty_dir", "no_stats"])
def test_load_agent_bad_paths_raise_one_line_value_errors(maskable, tmp_path, kind):
    _, _, path = maskable
    if kind == "missing":
        target = tmp_path / "nope.zip"
    elif kind == "not_zip":
        target = tmp_path / "x.zip"
        target.write_text("hello")
    elif kind == "empty_dir":
        target = tmp_path
    else:  # a normalised model whose statistics are neither inside the zip nor beside it
        import zipfile

        from agents.loading import STATS_ENTRY

        target = tmp_path / "model.zip"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w") as dst:
            for name in src.namelist():
                if name != STATS_ENTRY:
                    dst.writestr(name, src.read(name))
    with pytest.raises(ValueError) as e:
        load_agent(target)
    assert "\n" not in str(e.value)


def test_dqn_acts_on_the_native_discrete_space():
    # v1: DQN needs no wrapper (v0 mapped a composite table back to MultiDiscrete actions).
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([EnvFactory("small", "train", SHORT)])
    assert isinstance(venv.action_space, gym.spaces.Discrete)
    model = get_algo("dqn").cls("MlpPolicy", venv, learning_starts=0, seed=0)
    agent = AgentPolicy(model, get_algo("dqn"))
    env = make()
    obs, _ = env.reset(seed=0)
    for _ in range(4):
        action, _ = agent.predict(obs)
        assert env.action_space.contains(int(action))
        obs, *_ = env.step(action)


def test_action_prior_favours_the_noop_on_the_discrete_space():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.algos import apply_action_prior

    venv = DummyVecEnv([EnvFactory("small", "train", SHORT)])
    model = get_algo("ppo").cls("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0)
    noop = venv.envs[0].unwrapped.layout.noop
    before = model.policy.action_net.bias.detach().clone()
    assert apply_action_prior(model, noop, 2.0)
    diff = model.policy.action_net.bias.detach() - before
    assert diff[noop].item() == pytest.approx(2.0)
    assert np.count_nonzero(diff.numpy()) == 1
    assert not apply_action_prior(model, noop, 0.0)
