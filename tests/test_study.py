"""``python -m agents.study`` end to end at a tiny budget: files, JSON shape, resume, Ctrl-C, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import check_policy_row, run_study

from agents import stats, study
from agents.training import FINAL_EVAL_SEED, read_steps

REPO = Path(__file__).resolve().parents[1]
TINY = ["--scenarios", "small", "--seeds", "2", "--windows", "2", "--timesteps", "256",
        "-o", "episode_s=300", "--hp", "n_steps=64", "--n-envs", "2", "--jobs", "2",
        "--reps", "500", "--no-progress"]  # fmt: skip


def _free_port() -> int:  # loopback only: nothing listens there once closed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_json_shape_report_and_plots(first):
    import baselines

    out, p = first
    data = json.loads((out / "study.json").read_text())
    sc = data["scenarios"]["small"]
    assert (sc["agent"], sc["windows"], sc["seeds"]) == ("maskable_ppo", 2, 2)
    assert set(sc["policies"]) == {"maskable_ppo", *baselines.POLICIES}
    for name, r in sc["policies"].items():
        check_policy_row(name, r)
        assert 0 <= r["drop_rate"] <= 1 and 0 <= r["slo_attainment"] <= 1
        if name == "maskable_ppo":
            assert "prob_agent_better" not in r and np.shape(r["scores"]) == (2, 2)
            assert len(r["per_seed"]["drop_rate"]) == 2
        else:
            assert 0 <= r["prob_agent_better"] <= 1 and np.shape(r["scores"]) == (1, 2)
            a = np.array(sc["policies"]["maskable_ppo"]["scores"])
            assert r["prob_agent_better"] == stats.probability_of_improvement(a, r["scores"])
            # The p99 excess is the difference of the two rows' p99s, with an interval.
            want = sc["policies"]["maskable_ppo"]["p99_latency_s"] - r["p99_latency_s"]
            assert r["p99_excess_s"] == pytest.approx(want, abs=1e-9)
            assert r["p99_excess_ci"][0] <= r["p99_excess_ci"][1]
    assert sc["verdict"]["best_heuristic"] in baselines.POLICIES
    assert data["metric_sources"]["drop_rate"][0].startswith(("derived", "evaluate()"))
    report = (out / "report.md").read_text()
    assert "| policy | reward IQM [95% CI] | P(agent better)" in report
    assert "agent's p99 minus the best heuristic's: " in report
    for f in (out / "evals" / "small").glob("*_w2.json"):  # each window's latencies, kept
        with np.load(f.with_name(f.stem + ".latencies.npz")) as z:
            assert sorted(z.files) == ["arr_0", "arr_1"], f
    assert "python -m agents.study --scenarios small" in report and "Wall time" in report
    for kind in ("intervals", "profile", "cost_p99"):
        assert (out / f"{kind}_small.png").stat().st_size > 1000
    assert "train small/seed0" in p.stdout and "train small/seed1" in p.stdout
    assert data["training_segments"] == {"small/seed0": 1, "small/seed1": 1}
    assert "Every agent trained in one uninterrupted process" in report
    # The paired line, computed here from the JSON's own scores (2 seeds x 2 windows).
    a = np.array(sc["policies"]["maskable_ppo"]["scores"])
    best = sc["verdict"]["best_heuristic"]
    h = np.array(sc["policies"][best]["scores"])[0]
    gain = a.mean(axis=0) - h
    assert (f"the agent's mean over them by seed {a[0].mean():.1f}, {a[1].mean():.1f} "
            f"({best} {h.mean():.1f}); averaged over seeds, ahead on {(gain > 0).sum()} of 2 "
            f"windows, by {gain.mean():.1f} a window") in report  # fmt: skip
    # The report is rendered again from the JSON alone, the same text.
    r = subprocess.run([sys.executable, "-m", "agents.study_report", str(out / "study.json")],
                       cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and r.stdout == report, r.stderr


def test_heuristic_scores_are_evaluate_episode_rewards(first):
    from agents.evaluation import evaluate
    from baselines import make_policy

    out, _ = first
    sc = json.loads((out / "study.json").read_text())["scenarios"]["small"]
    res = evaluate("small", {"kpa": make_policy("kpa")}, episodes=2, seed=FINAL_EVAL_SEED,
                   overrides={"episode_s": 300}, progress=False, record_timeline=False)  # fmt: skip
    want = [e["episode_reward"] for e in res["policies"]["kpa"]["per_episode"]]
    assert sc["policies"]["kpa"]["scores"] == [want]
    row, raw = res["policies"]["kpa"], res["_raw"]["kpa"]
    drops = sum(e["requests_dropped"] for e in row["per_episode"])
    arrived = sum(e["requests_arrived"] for e in row["per_episode"])
    assert sc["policies"]["kpa"]["drop_rate"] == pytest.approx(drops / arrived)
    lat = raw["latencies"]  # drop-aware already: a drop counts at the timeout (metrics.py)
    assert lat.size == arrived
    assert sc["policies"]["kpa"]["p99_latency_s"] == pytest.approx(
        np.percentile(lat, 99, method="inverted_cdf")  # the empirical quantile (metrics.py)
    )


def test_second_run_does_not_retrain_and_an_unfinished_job_resumes(first):
    out, _ = first
    done = {k: (out / "runs/small" / k / "done.json").stat().st_mtime for k in ("seed0", "seed1")}
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "train " not in p.stdout and "evaluate " not in p.stdout  # all cached
    assert done == {k: (out / "runs/small" / k / "done.json").stat().st_mtime for k in done}
    # seed1 as if interrupted after its last save: resumed with --resume, not restarted
    job = out / "runs/small/seed1"
    (job / "done.json").unlink()
    run = next(job.glob("*/model.zip")).parent
    steps = read_steps(run / "model.zip")
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"train small/seed1: --resume {run}" in p.stdout and "seed0" not in p.stdout
    assert (job / "done.json").is_file() and read_steps(run / "model.zip") == steps
    assert len(list(job.glob("*/args.yml"))) == 1  # the same run folder
    data = json.loads((out / "study.json").read_text())  # the resume shows in the JSON and report
    assert data["training_segments"] == {"small/seed0": 1, "small/seed1": 2}
    assert "Resumed agents" in (out / "report.md").read_text()


def test_other_settings_in_the_same_folder_exit_2(first):
    out, _ = first
    args = [a if a != "256" else "512" for a in TINY]
    p = run_study(*args, "--out", out)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "other settings" in p.stderr


def test_an_edited_hyperparameter_file_refuses_the_folder_and_a_retrained_agent_is_evaluated_again(
    first,
):
    import yaml

    out, _ = first
    config = next((out / "runs/small/seed0").glob("*/config.yml"))
    good = config.read_text()
    try:  # as if agents/hyperparams/maskable_ppo.yml had said gamma 0.9 when seed0 was trained
        config.write_text(yaml.safe_dump({**yaml.safe_load(good), "gamma": 0.9}))
        before = (out / "invocations.jsonl").read_text()
        p = run_study(*TINY, "--out", out)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert f"{config} has gamma: 0.9 where the hyperparameters now give 0.995" in p.stderr
        assert (out / "invocations.jsonl").read_text() == before  # refused before any work
    finally:
        config.write_text(good)
    # seed0's cached evaluation as if made of a model since deleted and trained afresh
    cached = next((out / "evals/small").glob("seed0_*steps_w2.json"))
    entry = json.loads(cached.read_text())
    assert entry["run"] == config.parent.name
    cached.write_text(json.dumps({**entry, "run": "an_older_run", "rewards": [0.0, 0.0]}))
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "evaluated small/seed0" in p.stdout and "seed1" not in p.stdout
    # an agent's entry from before the "run" field is of an unknown model: evaluated again
    entry = json.loads(cached.read_text())
    del entry["run"]
    cached.write_text(json.dumps(entry))
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "evaluated small/seed0" in p.stdout and "seed1" not in p.stdout
    assert json.loads(cached.read_text())["run"] == config.parent.name
    assert "train " not in p.stdout
    again = json.loads(cached.read_text())
    assert again["run"] == config.parent.name and again["rewards"] == entry["rewards"]


def test_the_study_evaluates_each_runs_selected_model(first):
    """A run with model selection (best_model.zip) is evaluated on that model, as train.py's
    final table is, not on its last model.zip; a cached entry of the other model is redone."""
    import shutil

    out, _ = first
    run0, run1 = (next((out / f"runs/small/seed{k}").glob("*/model.zip")).parent for k in (0, 1))
    e0, e1 = (next((out / "evals/small").glob(f"seed{k}_*steps_w2.json")) for k in (0, 1))
    assert json.loads(e0.read_text())["model"] == "model.zip"  # small's block selects nothing
    shutil.copy(run1 / "model.zip", run0 / "best_model.zip")  # as if selection kept this one
    try:
        p = run_study(*TINY, "--out", out)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "evaluated small/seed0" in p.stdout and "seed1" not in p.stdout
        entry = json.loads(e0.read_text())
        assert entry["model"] == "best_model.zip"
        assert entry["rewards"] == json.loads(e1.read_text())["rewards"]  # seed1's model played
    finally:
        (run0 / "best_model.zip").unlink()
    p = run_study(*TINY, "--out", out)
    assert p.returncode == 0 and "evaluated small/seed0" in p.stdout, p.stderr[-2000:]
    assert json.loads(e0.read_text())["model"] == "model.zip"


def test_ctrl_c_stops_the_children_and_keeps_their_checkpoints(tmp_path):
    out = tmp_path / "s"
    args = [a if a != "256" else "1000000" for a in TINY]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "agents.study", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)  # fmt: skip
    logs = [out / f"runs/small/seed{k}/train.log" for k in (0, 1)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both children are learning (their handlers are set)
        if all(f.is_file() and "Training maskable_ppo" in f.read_text() for f in logs):
            break
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Continue with:" in stderr and f"--out {out}" in stderr
    for f in logs:
        assert "Stopped by SIGINT; checkpoint saved" in f.read_text()
        assert read_steps(next(f.parent.glob("*/model.zip"))) > 0
        assert not (f.parent / "done.json").exists()
    assert not (out / "study.json").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_training_child_checkpoints_and_exits_when_the_thread_that_started_it_ends(tmp_path):
    """What a Ray trial's worker that dies (or a killed study) leaves: its training child gets
    the parent-death signal, relayed once as SIGINT, so it saves a checkpoint and exits rather
    than training on orphaned. A thread that starts the child and then ends stands in for it."""
    from agents import study_jobs

    train = ["--scenario", "small", "--timesteps", "1000000", "-o", "episode_s=300",
             "--hp", "n_steps=64", "--n-envs", "1"]  # fmt: skip
    job = study_jobs.make_job("small", 0, train, tmp_path)
    log = Path(job.folder) / "train.log"
    started: list = []

    def parent() -> None:  # starts the child, waits until it learns, then ends
        started.extend(study_jobs.start(job))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "Training maskable_ppo" not in log.read_text():
            time.sleep(0.2)

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    proc, _, fh = started
    try:
        assert proc.wait(timeout=120) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        fh.close()
    text = log.read_text()
    assert "Stopped by SIGINT; checkpoint saved" in text and "Traceback" not in text, text
    assert 0 < read_steps(next(Path(job.folder).glob("*/model.zip"))) < 1_000_000


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--scenarios", "smal"], "unknown scenario 'smal'"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--windows", "0"], "--windows must be >= 1"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--algo", "ppo2"], "unknown algorithm"),
        (["--trace", "/nonexistent.csv"], "trace file not found"),
        (["--trace", str(REPO / "tests/data/bad_short_row.csv")], "bad_short_row.csv"),
        (["--scenarios", "small,small"], "twice"),
        (["--seeds", "two"], "invalid int value"),
        (["--hp", "bogus=1"], "'bogus' is not a MaskablePPO argument"),
        (["--address", f"127.0.0.1:{_free_port()}"], "no Ray cluster answers there"),
        (["--address", "nohostport"], "expected host:port"),
        (["--backend", "local", "--ray"], "--backend local with --ray"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "never"
    assert study.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m agents.study: error: ")
    assert needle in err and not out.exists()


def test_ray_backend_without_the_extra_exits_2(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a)
    )
    assert study.main(["--scenarios", "small", "--ray", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[ray]'" in err
    assert not (tmp_path / "s").exists()


def test_unwritable_out_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert study.main(["--scenarios", "small", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_metric_mapping_takes_evaluates_drop_aware_keys():
    row = {"slo_violation_rate": 0.2, "cost_usd": 1.5, "p99_latency_s": 3.0, "drop_rate": 0.3,
           "goodput_rps": 7.0}  # fmt: skip
    v, src = study.metric_values(row, {}, {})
    assert (v["drop_rate"], v["goodput_rps"], v["p99_latency_s"]) == (0.3, 7.0, 3.0)
    assert src["p99_latency_s"] == "evaluate() p99_latency_s"
    assert v["slo_attainment"] == pytest.approx(0.8) and src["slo_attainment"].startswith("derived")
    with pytest.raises(KeyError, match="drop_rate"):
        study.metric_values({k: x for k, x in row.items() if k != "drop_rate"}, {}, {})


def test_verdict_counts_float_noise_as_a_tie():
    """An agent that plays exactly as the best heuristic (the same episodes, summed in another
    order: the figures of the 2026-12-02 study's `azure` and `paper` entries) does not beat it on
    reward and is no worse on drops and p99; a real margin either way is seen."""
    from agents.study_report import judge

    def row(lo, iqm, drop, p99):
        return {"reward_ci": [lo, iqm + 1.0], "reward_iqm": iqm, "drop_rate": drop,
                "p99_latency_s": p99}  # fmt: skip

    tie = {"agent": row(-1017.8746319999985, -1017.8746319999985, 0.0, 9.294531742480832),
           "keepalive": row(-1017.9, -1017.8746319999988, 0.0, 9.294531742480785),
           "baseline": row(-2000.0, -1500.0, 0.01, 60.0)}  # fmt: skip
    v = judge(tie, "agent")
    assert v["best_heuristic"] == "keepalive"
    assert not v["reward_ci_low_above_best_iqm"] and not v["agent_beats_best"]
    assert v["drop_rate_no_higher"] and v["p99_no_worse"]
    win = {**tie, "agent": row(-1010.0, -1005.0, 0.0, 9.0)}
    assert judge(win, "agent") == {"best_heuristic": "keepalive",
                                   "reward_ci_low_above_best_iqm": True,
                                   "drop_rate_no_higher": True, "p99_no_worse": True,
                                   "agent_beats_best": True}  # fmt: skip
    worse = {**tie, "agent": row(-1010.0, -1005.0, 0.001, 9.3)}
    v = judge(worse, "agent")
    assert v["reward_ci_low_above_best_iqm"] and not v["drop_rate_no_higher"]
    assert not v["p99_no_worse"] and not v["agent_beats_best"]


def test_a_job_with_no_model_yet_is_not_refused_for_its_hyperparameters(tmp_path):
    from agents import study_jobs

    job = study_jobs.make_job("small", 0, ["--scenario", "small"], tmp_path)
    run = Path(job.folder) / "run_1"
    run.mkdir(parents=True)
    (run / "args.yml").write_text("scenario: small\n")
    (run / "config.yml").write_text("gamma: 0.9\n")
    study_jobs.check_job_folder(job, {"gamma": 0.995})  # it starts afresh: nothing to reuse
    (run / "model.zip").write_bytes(b"")
    with pytest.raises(study_jobs.JobError, match=r"has gamma: 0.9 where .* now give 0.995"):
        study_jobs.check_job_folder(job, {"gamma": 0.995})


def test_the_report_and_evaluations_do_not_import_the_study_module_again():
    # The study runs as __main__; a module importing agents.study would load it a second time
    # (a study crashed at its report step when its code was edited mid-run).
    code = ("import sys, agents.study_report, agents.study_eval; "
            "print('agents.study' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("content, needle", [(None, "No such file"), ("{", "Expecting"),
                                             ('{"wall_s": 1}', "")])  # fmt: skip
def test_the_report_command_refuses_what_is_not_a_study_json(tmp_path, content, needle):
    f = tmp_path / "study.json"
    if content is not None:
        f.write_text(content)
    r = subprocess.run([sys.executable, "-m", "agents.study_report", str(f)],
                       cwd=REPO, capture_output=True, text=True)  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m agents.study_report: error: ") and needle in lines[0]
