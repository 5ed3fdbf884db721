"""benchmarks.paper_regime and the paper_regime preset: the quick sweep's JSON, the preset's
known direction, the sourced path ending at the preset, and a source beside every value."""

from __future__ import annotations

import json
import re

import pytest

from agents.evaluation import evaluate
from baselines import make_policy
from benchmarks import paper_regime as pr
from envs.scenarios import PRESET_DIR, load_scenario

POINT_KEYS = {"value", "sourced", "p99_speedup", "p50_speedup", "within", "models", "requests"}


def test_quick_json_has_every_sweep_the_path_and_the_closest_point(capsys, tmp_path):
    assert pr.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"around", "episodes", "episode_s", "paper", "sweeps", "path", "closest"} <= set(res)
    assert res["paper"] == {"p99": 19.3, "p50": 1.4, "tolerance": 0.25}
    assert set(res["sweeps"]) == set(pr.SWEEPS)
    points = [p for pts in res["sweeps"].values() for p in pts] + res["path"]
    for name, pts in res["sweeps"].items():
        assert [p["value"] for p in pts] == list(pr.SWEEPS[name].quick)
    assert res["path"][-1]["value"] == "paper_regime preset"
    for p in points:
        assert POINT_KEYS <= set(p), p["value"]
        assert p["p99_speedup"] is None or p["p99_speedup"] > 0
        for m in p["models"].values():
            assert {"requests", "p99_speedup", "p50_speedup"} <= set(m)
    assert res["closest"] in points
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "paper_regime_p50.png",
        "paper_regime_p99.png",
    ]


def test_preset_loads_and_hierarchical_does_not_lose_the_tail():
    sc = load_scenario("paper_regime")
    assert sc.sim.features.request_timeout_s >= sc.episode_s  # no request gives up
    assert {m.deserialize_gb_per_s for m in sc.sim.models} == {2.6}  # safetensors
    res = evaluate(
        "paper_regime", {n: make_policy(n) for n in pr.POLICIES}, episodes=2,
        overrides={"episode_s": 900}, progress=False, record_timeline=False,
    )  # fmt: skip
    b, h = res["policies"]["baseline"], res["policies"]["hierarchical"]
    assert b["requests_arrived"] > 0
    assert h["p99_latency_s"] <= b["p99_latency_s"]
    assert h["p50_latency_s"] <= b["p50_latency_s"]


def test_the_sourced_path_ends_at_the_preset():
    last = load_scenario("paper", **pr.path_overrides(len(pr.PATH) - 1))
    preset = load_scenario("paper_regime")
    assert last.sim == preset.sim and last.reward == preset.reward
    assert last.workload == preset.workload and last.episode_s == preset.episode_s
    paper = load_scenario("paper")
    assert load_scenario("paper", **pr.path_overrides(0)).sim == paper.sim  # starts at paper
    assert preset.sim != paper.sim


def test_every_sweep_value_builds_a_valid_scenario_around_paper():
    paper = load_scenario("paper")
    for name, sw in pr.SWEEPS.items():
        for v in sw.values:
            load_scenario("paper", **sw.apply(paper, v))  # raises ConfigError if not
        assert set(sw.quick) <= set(sw.values), name
        assert set(sw.sourced) <= set(sw.values), name


_VALUE_LINE = re.compile(r"^\s*(- )?[A-Za-z_]+:\s*\S")


def test_every_value_in_the_preset_carries_a_source_comment():
    lines = (PRESET_DIR / "paper_regime.yaml").read_text().splitlines()
    valued = [ln for ln in lines if _VALUE_LINE.match(ln)]
    assert len(valued) > 30  # the check sees the file's values (block style, one a line)
    for ln in valued:
        value, sep, comment = ln.partition(" # ")
        assert sep and len(comment.strip()) > 5, f"no source comment: {ln!r}"
        assert "{" not in value, f"one value a line, so each has its own source: {ln!r}"


def test_within_is_the_paper_band():
    assert pr.within(19.3, 1.4) and pr.within(14.5, 1.06) and pr.within(24.1, 1.74)
    assert (
        not pr.within(14.4, 1.4) and not pr.within(19.3, 1.0) and not pr.within(float("nan"), 1.4)
    )


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--episodes", "0"], "--episodes must be >= 1"),
        (["--around", "nosuch"], "unknown scenario"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, msg, capsys):
    assert pr.main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
