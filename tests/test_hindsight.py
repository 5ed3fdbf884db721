"""The clairvoyant reference (``hindsight``): known answers on a toy, kept apart from the nine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import toy_config, toy_env
from test_baselines import assert_in_mask, make_env

import baselines
from baselines import ORACLES, POLICIES, make_policy
from benchmarks import headroom


def _play(env, pol, seed=0):
    """One episode; returns the instance count (warm + loading) after each interval."""
    u = env.unwrapped
    obs, _ = env.reset(seed=seed)
    pol.bind(env)
    done, counts = False, []
    while not done:
        a, _ = pol.predict(obs)
        assert_in_mask(u, a)
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
        if u.focus == 0:
            counts.append(int(u.sim.n_serving[0] + u.sim.n_loading[0]))
    return u.sim, np.array(counts), info


def _gpu_usd(info) -> float:
    return info["episode_metrics"]["cost_usd"]


def test_hindsight_scales_in_through_a_gap_and_is_warm_for_the_next_request():
    # One model, two requests 295 s apart: a keep-alive holds the GPU through the gap; the
    # clairvoyant policy releases it and loads again just before the second request.
    arrivals = [5.0, 300.0]
    sim, counts, info = _play(toy_env(toy_config(), arrivals, episode_s=400.0),
                              make_policy("hindsight"))  # fmt: skip
    assert counts[10:25].max() == 0  # 100-250 s: nothing held
    assert sim.cold_wait_s[1] == 0.0  # warm when the second request came
    assert sim.finish_s[1] - arrivals[1] < sim.slo[0]
    _, counts_ka, info_ka = _play(toy_env(toy_config(), arrivals, episode_s=400.0),
                                  make_policy("keepalive"))  # fmt: skip
    assert counts_ka[10:25].min() == 1  # the keep-alive holds it
    assert _gpu_usd(info) < _gpu_usd(info_ka)


def test_the_minute_variant_knows_the_minute_not_the_second():
    # The second request at 330 s lies in the minute [300, 360): knowing only that minute's
    # count, the instance must be ready by 300 s, so it loads 2-3 intervals (the load time
    # depends on where copies are then) before the exact one, and both are warm at 330 s.
    arrivals = [5.0, 330.0]

    def first_load_after_gap(name):
        sim, counts, _ = _play(toy_env(toy_config(), arrivals, episode_s=400.0),
                               make_policy(name))  # fmt: skip
        assert sim.cold_wait_s[1] == 0.0
        return int(np.flatnonzero(counts[10:] > 0)[0]) + 10  # interval index (10 s each)

    exact, minute = first_load_after_gap("hindsight"), first_load_after_gap("hindsight-minute")
    assert 2 <= exact - minute <= 3


def test_oracles_are_privileged_and_never_among_the_reference_policies():
    assert set(ORACLES) == {"hindsight", "hindsight-minute"}
    assert not set(ORACLES) & set(POLICIES)  # "all", teachers' "best", a study's heuristics
    for name in ORACLES:
        pol = make_policy(name)
        assert pol.privileged and pol.name == name
    with pytest.raises(ValueError, match="Did you mean 'hindsight'"):
        baselines.check_policy_name("hindsigt")
    for bad in ({"load_margin": 0.5}, {"lead_steps": -1.0}, {"resolution_s": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_policy("hindsight", **bad)


@pytest.mark.parametrize("name", list(ORACLES))
def test_oracles_act_inside_the_masks_on_paper(name):
    env = make_env("paper", episode_s=60)
    pol = make_policy(name, env=env)
    obs, _ = env.reset(seed=0)
    for _ in range(3 * env.unwrapped.M):
        a, _ = pol.predict(obs)
        assert_in_mask(env.unwrapped, a)
        obs, *_ = env.step(a)


def test_headroom_benchmark_reports_the_criterion(capsys):
    out = headroom.main(["--scenario", "small", "--windows", "2", "-o", "episode_s=300"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == out
    assert set(out["policies"]) == set(POLICIES) | set(ORACLES)
    assert out["best_heuristic"] in POLICIES
    for name in ORACLES:
        row = out["policies"][name]
        assert row["privileged"] and isinstance(row["meets_criterion"], bool)
        assert row["gain_per_window"]["windows_better"] in (0, 1, 2)


@pytest.mark.parametrize("argv, what", [
    (["--scenario", "paper", "-o", "episode_s=-5"], "episode_s"),
    (["--windows", "0"], "--windows must be >= 1, got 0"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--json", "/nonexistent/dir/h.json"], "no such folder"),
])  # fmt: skip
def test_headroom_benchmark_refuses_bad_input_in_one_line(argv, what, capsys):
    with pytest.raises(SystemExit) as e:
        headroom.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and err[0].startswith("benchmarks.headroom: error:")


def test_teacher_grid_plays_training_windows_and_keeps_the_best(capsys):
    from agents.evaluation import evaluate
    from baselines import make_policy
    from benchmarks import teacher_grid

    argv = ["--scenario", "small", "--policy", "keepalive", "--param", "keep_alive_s",
            "--values", "14400,28800,10", "--windows", "1", "-o", "episode_s=300",
            "--heldout", "1"]  # fmt: skip
    out = teacher_grid.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    assert list(out["values"]) == ["14400", "28800", "10"]
    # Both long keep-alives outlast the 300-s window: the same play, a tie, the first one kept.
    rows = out["values"]
    assert rows["14400"] == rows["28800"]
    means = {k: r["mean_reward"] for k, r in rows.items()}
    assert means["14400"] > means["10"] and out["best"] == "14400"  # (the first of the tie)
    assert out["hp"] == [
        "bc_teacher=keepalive",
        f"bc_teacher_params=dict(keep_alive_s={out['best']})",
    ]
    # The figures are those of the policy on the training split's windows from GRID_SEED.
    ref = evaluate("small", {"k": make_policy("keepalive", keep_alive_s=10.0)}, episodes=1,
                   seed=teacher_grid.GRID_SEED, split="train", overrides={"episode_s": 300},
                   progress=False)["policies"]["k"]  # fmt: skip
    assert rows["10"]["mean_reward"] == round(ref["per_episode"][0]["episode_reward"], 1)
    assert rows["10"]["p99_latency_s"] == round(ref["p99_latency_s"], 4)
    # --heldout plays the kept value alone on the study's held-out windows, after the choice.
    held = evaluate("small", {"k": make_policy("keepalive", keep_alive_s=float(out["best"]))},
                    episodes=1, seed=10_000, split="eval", overrides={"episode_s": 300},
                    progress=False)["policies"]["k"]  # fmt: skip
    assert out["heldout"]["value"] == out["best"] and out["heldout"]["seed"] == 10_000
    assert out["heldout"]["mean_reward"] == round(held["per_episode"][0]["episode_reward"], 1)


@pytest.mark.parametrize("argv, what", [
    (["--values", "600,x"], "--values must be comma-separated numbers, got 'x'"),
    (["--values", "600,600"], "--values lists 600 twice"),
    (["--values", "inf"], "finite"),
    (["--param", "bogus"], "bogus"),
    (["--policy", "bogus"], "bogus"),
    (["--windows", "0"], "--windows must be >= 1, got 0"),
    (["--heldout", "-1"], "--heldout must be >= 0, got -1"),
])  # fmt: skip
def test_teacher_grid_refuses_bad_input_in_one_line(argv, what, capsys):
    from benchmarks import teacher_grid

    base = {"--policy": "histogram", "--param": "range_s", "--values": "600", "--scenario": "small"}
    for k, v in zip(argv[::2], argv[1::2], strict=True):
        base[k] = v
    with pytest.raises(SystemExit) as e:
        teacher_grid.main([x for kv in base.items() for x in kv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and err[0].startswith("benchmarks.teacher_grid: error:")
