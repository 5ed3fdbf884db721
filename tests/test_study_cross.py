"""``python -m agents.study`` cross-trace entries and ``--windows all``, at a tiny budget.

One study trains 2 agents on the shipped Azure LLM trace replayed on `small`'s cluster (3
models; the trace has one function), evaluates them on all 3 back-to-back windows of its
held-out part (300-s episodes), and, without training, on 2 held-out windows of the shipped
Azure 2019 day (1,350 functions) replayed on the same cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import check_policy_row, run_study

from agents import stats, study
from agents.training import FINAL_EVAL_SEED

REPO = Path(__file__).resolve().parents[1]
SRC = "trace-azure_llm_2023"
TINY = ["--scenarios", "", "--trace", "azure_llm_2023", "--trace-scenario", "small",
        "--windows", "all", "--seeds", "2", "--timesteps", "256", "-o", "episode_s=300",
        "--hp", "n_steps=64", "--n-envs", "2", "--jobs", "2", "--reps", "500", "--no-progress",
        "--cross-from", SRC, "--cross-windows", "2"]  # fmt: skip


def _overrides(trace: str) -> dict:
    from envs.scenarios import trace_overrides

    return trace_overrides("small", {"episode_s": 300}, trace)[0]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("xstudy") / "s"
    p = run_study(*TINY, "--cross-trace", "azure2019", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_windows_all_plays_every_held_out_window_once(first):
    import baselines
    from agents.evaluation import evaluate
    from baselines import make_policy

    out, _ = first
    sc = json.loads((out / "study.json").read_text())["scenarios"][SRC]
    assert (sc["windows"], sc["seeds"], sc["held_out_windows"]) == (3, 2, 3)
    assert sc["coverage"]["mode"] == "all" and sc["coverage"]["part_s"][1] == 3502.0
    assert set(sc["policies"]) == {"maskable_ppo", *baselines.POLICIES}
    assert np.shape(sc["policies"]["maskable_ppo"]["scores"]) == (2, 3)
    res = evaluate("small", {"kpa": make_policy("kpa")}, episodes="all", seed=FINAL_EVAL_SEED,
                   overrides=_overrides("azure_llm_2023"), progress=False,
                   record_timeline=False)  # fmt: skip
    assert sc["policies"]["kpa"]["scores"] == [
        [e["episode_reward"] for e in res["policies"]["kpa"]["per_episode"]]
    ]
    assert sc["coverage"]["requests"] == res["windows"]["requests"]
    assert sc["window_starts_s"] == [e["start_s"] for e in res["policies"]["kpa"]["per_episode"]]
    assert (out / f"evals/{SRC}/kpa_wall.json").is_file()


def test_cross_trace_entry_evaluates_the_source_agents_on_the_other_trace(first):
    import baselines
    from agents.evaluation import evaluate
    from agents.loading import load_agent
    from baselines import make_policy

    out, p = first
    data = json.loads((out / "study.json").read_text())
    assert set(data["scenarios"]) == {SRC, f"{SRC}->azure2019"}
    sc = data["scenarios"][f"{SRC}->azure2019"]
    assert (sc["trained_on"], sc["trace"], sc["scenario"]) == (SRC, "azure2019", "small")
    assert (sc["windows"], sc["seeds"], sc["train_steps"]) == (2, 2, 256)
    assert sc["coverage"]["mode"] == "drawn" and sc["held_out_windows"] == 72
    assert set(sc["policies"]) == {"maskable_ppo", *baselines.POLICIES}
    for name, r in sc["policies"].items():
        check_policy_row(name, r)
        if name != "maskable_ppo":
            a = np.array(sc["policies"]["maskable_ppo"]["scores"])
            assert r["prob_agent_better"] == stats.probability_of_improvement(a, r["scores"])
    assert sc["verdict"]["best_heuristic"] in baselines.POLICIES
    # The scores are evaluate()'s on the trace replayed on `small`'s cluster: a heuristic's,
    # and the agent's (its policy is shared across the cluster's 3 models, whatever the trace's
    # 1,350 functions).
    ov = _overrides("azure2019")
    assert sc["overrides"] == json.loads(json.dumps(ov))
    run = next((out / f"runs/{SRC}/seed1").glob("*/model.zip")).parent
    res = evaluate("small", {"kpa": make_policy("kpa"), "agent": load_agent(run)}, episodes=2,
                   seed=FINAL_EVAL_SEED, overrides=ov, progress=False,
                   record_timeline=False)  # fmt: skip
    for name, row in (("kpa", sc["policies"]["kpa"]["scores"][0]),
                      ("agent", sc["policies"]["maskable_ppo"]["scores"][1])):  # fmt: skip
        assert row == [e["episode_reward"] for e in res["policies"][name]["per_episode"]]
    assert (out / f"evals/{SRC}/on-azure2019/seed0_256steps_w2.json").is_file()
    report = (out / "report.md").read_text()
    assert "## Cross-trace: agents evaluated on traces they were not trained on" in report
    assert f"| {SRC} | `azure2019` | 2 |" in report
    assert f"## {SRC}->azure2019: trained on `{SRC}`, evaluated on `azure2019`" in report
    assert "all 3 back-to-back windows of the held-out part" in report
    assert "The last window is the part's rest, 280 of 300 trace seconds" in report
    for kind in ("intervals", "profile", "cost_p99"):
        assert (out / f"{kind}_{SRC}_on_azure2019.png").stat().st_size > 1000
    assert "train " + SRC + "/seed0" in p.stdout and "->azure2019/seed1" in p.stdout


def test_a_new_cross_trace_is_evaluated_without_training_and_a_rerun_evaluates_nothing(first):
    out, _ = first
    done = {k: (out / f"runs/{SRC}" / k / "done.json").stat().st_mtime for k in ("seed0", "seed1")}
    cached = (out / f"evals/{SRC}/on-azure2019/kpa_w2.json").stat().st_mtime
    argv = [*TINY, "--cross-trace", "azure2019,azure_llm_2023", "--out", out]
    p = run_study(*argv)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "train " not in p.stdout
    assert "evaluate 11 task(s) x 2 windows" in p.stdout, p.stdout  # the new entry only
    assert "->azure2019" not in p.stdout and f"evaluated {SRC}->azure_llm_2023/seed1" in p.stdout
    assert cached == (out / f"evals/{SRC}/on-azure2019/kpa_w2.json").stat().st_mtime
    assert done == {k: (out / f"runs/{SRC}" / k / "done.json").stat().st_mtime for k in done}
    scen = json.loads((out / "study.json").read_text())["scenarios"]
    assert list(scen) == [SRC, f"{SRC}->azure2019", f"{SRC}->azure_llm_2023"]
    p = run_study(*argv)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "train " not in p.stdout and "evaluate " not in p.stdout  # all cached


def test_another_trace_of_the_same_name_in_the_same_folder_exits_2(first, tmp_path):
    from envs.workloads.traces import shipped_trace_path

    out, _ = first
    other = tmp_path / "azure2019.csv.gz"
    shutil.copy(shipped_trace_path("azure2019"), other)
    before = sorted(p.name for p in (out / f"evals/{SRC}/on-azure2019").iterdir())
    p = run_study(*TINY, "--cross-trace", other, "--out", out)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "was evaluated with other settings" in p.stderr and "on-azure2019" in p.stderr
    assert before == sorted(p.name for p in (out / f"evals/{SRC}/on-azure2019").iterdir())


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--scenarios", "small", "--cross-trace", "azure_llm_2023"],
         "--cross-trace needs --cross-from LABEL: no 'azure' scenario is studied"),
        (["--scenarios", "small", "--cross-trace", "azure_llm_2023", "--cross-from", "paper"],
         "--cross-from 'paper' is not a studied scenario (studied: small)"),
        (["--scenarios", "small", "--cross-from", "small"], "--cross-from need(s) --cross-trace"),
        (["--scenarios", "small", "--cross-windows", "all"], "--cross-windows need(s) --cross-trace"),
        (["--scenarios", "small", "--cross-from", "small", "--cross-trace", "/nonexistent.csv"],
         "--cross-trace '/nonexistent.csv': trace file not found"),
        (["--scenarios", "small", "--cross-from", "small", "--cross-trace", ","],
         "--cross-trace names no trace"),
        (["--scenarios", "small", "--cross-from", "small",
          "--cross-trace", "azure2019,azure_llm_2023,azure2019"], "names a trace twice"),
        (["--scenarios", "small", "--cross-from", "small",
          "--cross-trace", "azure2019,elsewhere/azure2019.csv"], "two traces share the name"),
        (["--scenarios", "small", "--cross-from", "small",
          "--cross-trace", str(REPO / "tests/data/bad_short_row.csv")], "bad_short_row.csv"),
        # the trace's held-out part (285 s) is shorter than the study's episodes; the trace also
        # warns (sorted on loading), and that must not add a line
        (["--scenarios", "small", "-o", "episode_s=300", "--cross-from", "small",
          "--cross-trace", str(REPO / "tests/data/azure2021_20.csv")],
         "episode_s must be shorter than both the training and the held-out part"),
        # a rule that needs one trace function per model: a 1-function trace cannot feed the
        # 10 models of azure's cluster
        (["--scenarios", "azure", "-o", "workload__mapping=sample",
          "--cross-trace", "azure_llm_2023"], "only 1 functions"),
        (["--scenarios", "small", "--cross-from", "small", "--cross-trace", "azure2019",
          "--cross-windows", "0"], "--cross-windows must be >= 1, got 0"),
        (["--scenarios", "small", "--cross-from", "small", "--cross-trace", "azure2019",
          "--cross-windows", "some"], "--cross-windows must be a positive integer or 'all'"),
        (["--scenarios", "small", "--windows", "all"],
         "--windows all: tiling the held-out part needs a trace workload, and scenario 'small'"),
        (["--scenarios", "small", "--trace-override", "workload__mapping=sample"],
         "--time-col/--model-col/--trace-override need --trace"),
        (["--scenarios", "small", "--trace", "azure2019", "--trace-override", "mapping=sample"],
         "--trace: scenario 'paper': unknown key 'mapping'"),
        (["--scenarios", "small", "--windows", "two"],
         "--windows must be a positive integer or 'all', got 'two'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "never"
    assert study.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m agents.study: error: "), err
    assert needle in err and not out.exists()


def test_cross_trace_of_a_synthetic_source_is_accepted_and_tiles_the_trace(tmp_path):
    """A source with a synthetic workload (no --windows all there) can still have its
    cross-trace entries tiled; parse() writes nothing."""
    args, plan = study.parse(["--scenarios", "small", "-o", "episode_s=300", "--windows", "3",
                              "--cross-from", "small", "--cross-trace", "azure_llm_2023",
                              "--cross-windows", "all", "--out", str(tmp_path / "s")])  # fmt: skip
    assert list(plan) == ["small", "small->azure_llm_2023"]
    x = plan["small->azure_llm_2023"]
    assert (x["windows"], x["held_out_windows"], x["train_args"]) == ("all", 3, None)
    assert x["eval_dir"] == "small/on-azure_llm_2023" and x["trained_on"] == "small"
    assert plan["small"]["held_out_windows"] is None and plan["small"]["windows"] == 3
    assert not (tmp_path / "s").exists()


def test_cross_from_defaults_to_azure_and_takes_its_cluster(tmp_path):
    import envs

    args, plan = study.parse(["--scenarios", "azure", "--cross-trace", "azure_llm_2023",
                              "--out", str(tmp_path / "s")])  # fmt: skip
    x = plan["azure->azure_llm_2023"]
    assert args.cross_from == "azure" and x["scenario"] == "azure" and x["windows"] == 20
    sc = envs.load_scenario("azure", **x["overrides"])
    assert len(sc.sim.models) == 10 and sc.workload["path"] == "azure_llm_2023"
    # the 3,502-s trace: the 3,600-s episode shrinks to fit its held-out part (875.5 s), which
    # then holds 2 back-to-back windows, so 20 drawn ones overlap (the report says so)
    assert x["episode_s"] == 870 and x["held_out_windows"] == 2 and "shrunk" in x["note"]
    assert not (tmp_path / "s").exists()


def test_trace_override_applies_to_the_trace_entry_alone(tmp_path):
    """--trace-override reaches the trace entry's scenario and its training command, not the
    synthetic scenarios (whose workloads have no mapping field); parse() writes nothing."""
    import envs
    from envs.workloads import make_workload

    args, plan = study.parse(["--scenarios", "small", "--trace", "azure2019", "--trace-override",
                              "workload__mapping=sample", "--trace-override",
                              "workload__min_requests=144", "--out", str(tmp_path / "s")])  # fmt: skip
    t = plan["trace-azure2019"]
    assert t["overrides"]["workload"]["mapping"] == "sample"
    assert plan["small"]["overrides"] == {}
    argv = t["train_args"]
    assert argv[argv.index("--trace") :] == ["--trace", "azure2019", "-o", "workload__mapping=sample",
                                            "-o", "workload__min_requests=144"]  # fmt: skip
    assert "-o" not in plan["small"]["train_args"]
    sc = envs.load_scenario("paper", **t["overrides"])
    fmap = make_workload(sc.workload).model_map(len(sc.sim.models))
    assert sorted(fmap[fmap >= 0].tolist()) == list(range(18))  # one function per deployment
    assert not (tmp_path / "s").exists()
