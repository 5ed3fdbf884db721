"""Scenario presets and YAML validation."""

from __future__ import annotations

import pytest

from envs import list_presets, load_scenario
from envs.scenarios import ConfigError

GOOD = """
description: tiny
hosts: [{count: 2, n_gpus: 1, gpu_mem_gb: 16}]
models: [bert-base, {base: gpt2-xl, slo_s: 3.0}, {name: mine, size_gb: 1.0, gpu_batch1_ms: 5,
         gpu_per_item_ms: 1, cpu_ms: 50, max_batch: 4, slo_s: 0.5, deserialize_gb_per_s: 1.0}]
features: {keep_alive_s: 300}
workload: {kind: poisson, rate_rps: 2.0}
episode_s: 600
span_s: 7200
"""


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_presets_are_listed_with_descriptions_and_load():
    presets = list_presets()
    assert {"small", "paper", "azure"} <= set(presets)
    for name, desc in presets.items():
        assert desc, name
        sc = load_scenario(name)
        assert sc.n_steps == round(sc.episode_s / sc.step_s)


def test_yaml_file_with_catalog_names_overrides_and_custom_models(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert len(sc.sim.hosts) == 2 and sc.sim.hosts[0].gpu_mem_gb == 16
    assert [m.name for m in sc.sim.models] == ["bert-base", "gpt2-xl", "mine"]
    assert sc.sim.models[1].slo_s == 3.0 and sc.sim.models[1].size_gb == 6.28
    assert sc.sim.features.keep_alive_s == 300


@pytest.mark.parametrize(
    "edit, match",
    [
        (("episode_s: 600", "episode_s: -1"), "episode_s must be a finite number > 0, got -1"),
        (("keep_alive_s: 300", "keep_alive_s: -3"), r"FeatureSpec.keep_alive_s must be .*>= 0.*-3"),
        (("n_gpus: 1", "n_gpus: 0"), r"hosts\[0\].*HostSpec.n_gpus must be an integer >= 1, got 0"),
        (("bert-base", "bert-bse"), "Did you mean 'bert-base'"),
        (("features:", "featurez:"), "unknown key 'featurez'.*Did you mean 'features'"),
        (("keep_alive_s", "keepalive_s"), "unknown key 'keepalive_s'"),
        (("kind: poisson", "kind: poison"), "Did you mean 'poisson'"),
        (("gpu_mem_gb: 16", "gpu_mem_gb: 4"), "larger than every GPU's memory"),
        (("span_s: 7200", "span_s: 700"), "episode_s must be shorter"),
    ],
)
def test_bad_fields_name_field_value_and_range(tmp_path, edit, match):
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError, match=match):
        load_scenario(write(tmp_path, GOOD.replace(old, new, 1)))


def test_missing_file_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown scenario 'papr'.*Did you mean 'paper'"):
        load_scenario("papr")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(write(tmp_path, "models: [a, b\n"))
    with pytest.raises(ConfigError, match="missing required key 'workload'"):
        load_scenario(write(tmp_path, "models: [bert-base]\n"))


def test_keyword_overrides_reach_sections():
    sc = load_scenario("small", features__keep_alive_s=120.0, reward__late_usd=0.0, episode_s=300)
    assert sc.sim.features.keep_alive_s == 120.0
    assert sc.reward.late_usd == 0.0 and sc.episode_s == 300
    with pytest.raises(ConfigError, match="unknown key 'featres'"):
        load_scenario("small", featres__keep_alive_s=1)


def test_model_copies_and_initial_pool():
    sc = load_scenario("paper")
    names = [m.name for m in sc.sim.models]
    assert (
        len(names) == 18
        and len(set(names)) == 18
        and names[:2] == ["codebert-base.1", "codebert-base.2"]
    )
    assert sc.initial_copies == 1
    from envs.env import ServerlessGPUEnv

    env = ServerlessGPUEnv("paper", episode_s=60)
    env.reset(seed=0)
    held = [len(env.sim.hosts_with_copy(m)) for m in range(env.M)]
    assert held == [1] * 18
    assert all(c.used_gb <= c.capacity_gb for c in env.sim.mem)
    with pytest.raises(ConfigError, match="initial_copies"):
        load_scenario("small", initial_copies=9)


def test_azure_replays_one_function_per_model_each_invoked_every_10_minutes_on_average():
    """The preset's documented workload (envs/presets/azure.yaml): each of its 10 models serves
    one function of the Azure 2019 day, drawn among those with >= 144 requests (one per 10
    minutes), the busiest on model 0; the other functions are not replayed."""
    import numpy as np

    from envs.workloads import make_workload

    sc = load_scenario("azure")
    gen = make_workload(sc.workload)
    M = len(sc.sim.models)
    fmap = gen.model_map(M)
    totals = gen.trace.function_totals()
    assert sorted(fmap[fmap >= 0].tolist()) == list(range(M))  # one function each
    per_model = np.array([int(totals[fmap == m][0]) for m in range(M)])
    assert (per_model >= 144).all() and (np.diff(per_model) <= 0).all()
    assert per_model.sum() < totals.sum() / 10  # not the whole day's load
