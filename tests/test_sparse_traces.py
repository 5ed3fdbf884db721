"""Sparse and long traces: windows that hold no request are said, ``--windows all`` plays every
held-out request exactly once, the footer and the JSON count windows and requests.

Request counts are taken from the trace files with the standard library (``csv``, ``datetime``),
not through the loader, so the evaluation's coverage is checked against the file itself.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.evaluation import evaluate, format_table
from agents.windows import empty_windows_note, tiled_windows
from baselines import make_policy
from envs import load_scenario
from envs.scenarios import trace_overrides
from envs.workloads import TraceWorkload
from envs.workloads.windows import tile

ROOT = Path(__file__).resolve().parents[1]
SPARSE = ROOT / "tests" / "data" / "sparse_genai.csv"  # 1,030 requests over 21 days, mostly quiet
HELD_OUT = 0.25  # small's held_out_fraction


def file_times(path: Path, col: str) -> np.ndarray:
    """Request times in seconds after the file's first request, read with the standard library."""
    with open(path, newline="") as f:
        raw = [row[col] for row in csv.DictReader(f)]
    try:
        t = np.array([float(x) for x in raw])
    except ValueError:
        t = np.array([datetime.fromisoformat(x).timestamp() for x in raw])
    return np.sort(t - t.min())


def held_out(t: np.ndarray) -> tuple[float, float, int]:
    """(cut, end, requests in [cut, end)) of a per-request trace: its length is the first whole
    second after its last request, the last quarter is held out."""
    end = math.floor(t[-1]) + 1.0
    cut = end * (1 - HELD_OUT)
    return cut, end, int((t >= cut).sum())


# ----------------------------------------------------------------------------- tiling ----
def test_tile_known_answers():
    assert tile(0, 90, 30, 10) == [(0, 30), (30, 30), (60, 30)]
    # The rest (5 s) is rounded up to a whole quantum: the last window ends 5 s past hi.
    assert tile(0, 95, 30, 10) == [(0, 30), (30, 30), (60, 30), (90, 10)]
    assert tile(100, 121, 30, 10) == [(100, 30)]  # shorter than a window: one, rounded up
    assert tile(0, 75, 30, 10) == [(0, 30), (30, 30), (60, 20)]


@pytest.mark.parametrize(
    "args, needle",
    [((0, 90, 25, 10), "whole number"), ((5, 5, 30, 10), "empty"), ((0, 90, 0, 10), "> 0"),
     ((0, math.inf, 30, 10), "finite")],
)  # fmt: skip
def test_tile_rejects_bad_sizes(args, needle):
    with pytest.raises(ValueError, match=needle):
        tile(*args)


@settings(max_examples=200, deadline=None)
@given(
    lo=st.floats(0, 1e6),
    windows=st.floats(1e-3, 30),  # the stretch, in windows
    steps=st.integers(1, 50),
    quantum=st.sampled_from([1.0, 10.0, 60.0, 0.5, 7.3]),
)
def test_tile_covers_the_stretch_once(lo, windows, steps, quantum):
    hi = lo + windows * steps * quantum
    if not hi > lo:
        return
    out = tile(lo, hi, steps * quantum, quantum)
    assert out[0][0] == lo
    for (s0, n0), (s1, _) in zip(out, out[1:], strict=False):
        assert s1 == pytest.approx(s0 + n0, rel=1e-12, abs=1e-9)  # back to back
    for _, n in out:
        assert n / quantum == pytest.approx(round(n / quantum), abs=1e-9) and n > 0
    end = out[-1][0] + out[-1][1]
    assert hi - 1e-9 * max(1, hi) <= end < hi + quantum + 1e-9 * max(1, hi)


# ----------------------------------------------------------------------- trace padding ----
def test_trace_window_past_the_end_needs_pad_s(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("t,model\n0,a\n5,a\n99,a\n")  # lasts 100 s
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outside the trace"):
        TraceWorkload(str(p), time_col="t")(rng, 1, 10.0, 95.0)
    wl = TraceWorkload(str(p), time_col="t", pad_s=10.0)(rng, 1, 10.0, 95.0)
    assert wl.arrivals_s[0].tolist() == [4.0]  # the request at 99 s; 100..105 s is silence
    with pytest.raises(ValueError, match="plus pad_s=10 s"):
        TraceWorkload(str(p), time_col="t", pad_s=10.0)(rng, 1, 20.0, 95.0)
    with pytest.raises(ValueError, match="pad_s must be a finite number >= 0"):
        TraceWorkload(str(p), time_col="t", pad_s=-1)


# ------------------------------------------------------------------ every request once ----
def scenario(trace: Path, col: str, **extra) -> dict:
    over, _ = trace_overrides("small", dict(extra), str(trace), col, "model")
    return over


def run(trace, col, episodes="all", seed=0, **extra):
    over = scenario(trace, col, **extra)
    return evaluate("small", {"baseline": make_policy("baseline")}, episodes=episodes, seed=seed,
                    overrides=over, progress=False, record_timeline=False), over  # fmt: skip


def test_all_windows_score_every_held_out_request_once_on_boundaries(tmp_path):
    # Requests every second, one on the cut, one just before it and one on each tile boundary
    # (the cut is 751.5 s: the trace lasts 1,002 s); 60-s episodes, a 10.5-s rest.
    p = tmp_path / "edges.csv"
    times = (
        [float(x) for x in range(0, 1002)] + [751.4, 751.5] + [751.5 + 60 * k for k in (1, 2, 3, 4)]
    )
    p.write_text("t,model\n" + "".join(f"{x},m{int(x) % 3}\n" for x in sorted(times)))
    t = file_times(p, "t")
    cut, end, n_held = held_out(t)
    assert (cut, end) == (751.5, 1002.0)
    res, _ = run(p, "t", episode_s=60)
    w = res["windows"]
    eps = res["policies"]["baseline"]["per_episode"]
    starts = [e["start_s"] for e in eps]
    assert starts == pytest.approx([751.5 + 60 * k for k in range(5)], abs=1e-5)
    # Windows start on the boundaries: a request at the very start belongs to its window
    # (Simulator.open_window), none is lost between two.
    assert [e["window_s"] for e in eps] == [60, 60, 60, 60, 20]  # the 10.5-s rest, rounded up
    per = [int(((t >= e["start_s"]) & (t < e["start_s"] + e["window_s"])).sum()) for e in eps]
    assert [e["requests_arrived"] for e in eps] == per
    assert w["requests"] == sum(per) == n_held
    assert w["count"] == 5 and w["empty"] == 0 and w["part_s"] == [751.5, 1002.0]
    assert res["policies"]["baseline"]["requests_arrived"] == n_held / 5  # a per-episode mean


def test_all_windows_of_the_sparse_fixture(tmp_path):
    # 60 trace seconds per simulated second: the held-out 5.3 days are 7 episodes of 1,200 s.
    t = file_times(SPARSE, "timestamp")
    cut, end, n_held = held_out(t)
    res, over = run(SPARSE, "timestamp", workload__time_scale=60)
    sc = load_scenario("small", **over)
    w, eps = res["windows"], res["policies"]["baseline"]["per_episode"]
    assert w["mode"] == "all" and w["count"] == len(tiled_windows(sc)) == len(eps) == 7
    assert w["requests"] == n_held == sum(e["requests_arrived"] for e in eps) > 0
    for e in eps:  # each episode's count, from the file
        a, b = e["start_s"], e["start_s"] + e["window_s"] * 60
        assert e["requests_arrived"] == int(((t >= a) & (t < b)).sum())
    empty = [i for i, e in enumerate(eps) if e["requests_arrived"] == 0]
    assert w["empty_episodes"] == empty and w["empty"] == len(empty)
    r = res["policies"]["baseline"]
    assert all(math.isfinite(r[k]) for k in ("p50_latency_s", "p99_latency_s", "mean_latency_s"))
    foot = format_table(res)
    assert (cut, end) == (1373250.75, 1831001.0)
    assert (
        "Figures cover all 7 consecutive windows of the held-out part [1,373,250.75, 1,831,001) s"
        in foot
    )
    assert f"and {n_held:,} requests." in foot


def test_drawn_empty_windows_are_counted_and_said():
    # Real time: most 20-minute windows of the held-out part hold no request.
    t = file_times(SPARSE, "timestamp")
    res, _ = run(SPARSE, "timestamp", episodes=6, seed=3)
    eps = res["policies"]["baseline"]["per_episode"]
    from_file = [int(((t >= e["start_s"]) & (t < e["start_s"] + e["window_s"])).sum()) for e in eps]
    assert [e["requests_arrived"] for e in eps] == from_file
    k = sum(1 for n in from_file if n == 0)
    w = res["windows"]
    assert (
        w["mode"] == "drawn"
        and w["count"] == 6
        and w["empty"] == k
        and w["requests"] == sum(from_file)
    )
    note = empty_windows_note(res)
    assert k > 0, "seed 3 should draw an empty window of the sparse fixture"
    assert note.startswith(f"{k} of 6 windows held no request (seconds [")
    assert "--windows all" in note and "\n" not in note
    assert f"({k} of them held no request) and {sum(from_file):,} requests." in format_table(res)


def test_no_note_when_every_window_holds_requests():
    res = evaluate("small", {"baseline": make_policy("baseline")}, episodes=2,
                   overrides={"episode_s": 300}, progress=False)  # fmt: skip
    assert res["windows"]["empty"] == 0 and empty_windows_note(res) is None
    assert "(none of them empty)" in format_table(res)


def test_library_rejects_all_on_synthetic_workloads_and_train_split():
    pol = {"baseline": make_policy("baseline")}
    with pytest.raises(ValueError, match="needs a trace workload.*'mmpp'"):
        evaluate("small", pol, episodes="all", progress=False)
    with pytest.raises(ValueError, match="split must be 'eval'"):
        evaluate("small", pol, episodes="all", split="train", progress=False)
    with pytest.raises(ValueError, match="whole number of step_s"):
        evaluate("paper", pol, episodes="all", overrides={"episode_s": 605}, progress=False)


def test_train_final_evaluation_warns_on_empty_windows(tmp_path, capsys, monkeypatch):
    import agents.evaluation
    from agents import training

    monkeypatch.setattr(training, "_references", lambda: {"baseline": make_policy("baseline")})
    monkeypatch.setattr(agents.evaluation, "plot_results", lambda results, out: [])
    over = scenario(SPARSE, "timestamp", episode_s=300)
    cfg = SimpleNamespace(args={"scenario": "small", "eval_episodes": 3, "no_progress": True},
                          overrides=over, run_dir=tmp_path)  # fmt: skip
    agent = make_policy("hierarchical")
    agent.name = "agent"
    training.final_evaluation(cfg, agent)
    captured = capsys.readouterr()
    data = json.loads((tmp_path / "results.json").read_text())
    k = data["windows"]["empty"]
    assert k > 0, "the final evaluation's seeds should draw an empty window of the sparse fixture"
    lines = [x for x in captured.err.splitlines() if "held no request" in x]
    assert len(lines) == 1
    assert lines[0].startswith(f"train.py: warning: {k} of 3 windows held no request")
    assert f"({k} of them held no request)" in captured.out  # the table's footer


# --------------------------------------------------------------------------------- CLI ----
def cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--no-progress", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_windows_all_on_the_sparse_fixture(tmp_path):
    out = tmp_path / "r.json"
    r = cli("--scenario", "small", "--policies", "baseline,hierarchical", "--trace", str(SPARSE),
            "--time-col", "timestamp", "--model-col", "model", "--windows", "all",
            "-o", "workload__time_scale=60", "--json", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    w = data["windows"]
    _, _, n_held = held_out(file_times(SPARSE, "timestamp"))
    assert w["mode"] == "all" and w["count"] == data["episodes"] == 7 and w["requests"] == n_held
    for name in ("baseline", "hierarchical"):
        for k in ("p50_latency_s", "p99_latency_s", "mean_latency_s", "cost_usd"):
            assert isinstance(data["policies"][name][k], float), (name, k)
    assert "Figures cover all 7 consecutive windows" in r.stdout
    warn = [x for x in r.stderr.splitlines() if "held no request" in x]
    assert len(warn) == (1 if w["empty"] else 0)


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "many", "ALL", ""])
def test_cli_bad_windows_values_exit_2(value, tmp_path, capsys):
    import evaluate as tool  # in-process: the same main() as the script, without a start-up

    out = tmp_path / "r.json"
    rc = tool.main(["--scenario", "small", "--windows", value, "--json", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and captured.out == ""
    assert lines[0] == (
        f"evaluate.py: error: --windows must be a positive integer or 'all', got {value!r}"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--windows", "all"], "--windows all: tiling the held-out part needs a trace workload"),
        (["--windows", "2", "--episodes", "2"], "--windows 2 and --episodes 2: give one of them"),
        (["--windows", "all", "--split", "train"], "--windows all tiles the held-out part"),
    ],
)
def test_cli_windows_misuse_exits_2(args, needle, tmp_path):
    out = tmp_path / "r.json"
    r = cli("--scenario", "small", *args, "--json", str(out))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert r.stdout == "" and not out.exists()


def test_cli_windows_n_is_episodes_n(tmp_path):
    r = cli("--scenario", "small", "--policies", "baseline", "--windows", "2", "--episode-s",
            "60", "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["episodes"] == 2 and data["windows"]["count"] == 2
    assert data["windows"]["mode"] == "drawn"


# ------------------------------------------------------------ training's periodic evaluation ----
def test_the_periodic_evaluation_says_once_which_windows_held_no_request(capsys):
    """train.py's ``eval/`` curves come from :class:`HeldOutEvalCallback`, not evaluate(): on a
    sparse trace it too says which of its windows held no request, once per run (its windows
    are the same at every evaluation), and the windows it names are the ones that were empty."""
    from stable_baselines3.common.logger import configure

    from agents.callbacks import HeldOutEvalCallback

    over, _ = trace_overrides("small", {"episode_s": 3600}, str(SPARSE), "timestamp", "model")
    seeds = list(range(10000, 10016))
    cb = HeldOutEvalCallback(lambda model: make_policy("keepalive"), "small", over, 1, len(seeds),
                             seeds[0])  # fmt: skip
    cb.model = SimpleNamespace(logger=configure(None, []), num_timesteps=0)
    cb.evaluate()
    cb.evaluate()
    err = capsys.readouterr().err.strip().splitlines()
    # The empty windows, counted independently: the env's own count of each window's requests.
    import gymnasium as gym

    env = gym.make("coldstart/ServerlessGPU-v1", scenario="small", split="eval", **over)
    empty = []
    for s in seeds:
        env.reset(seed=s)
        done, info = False, {}
        while not done:
            _, _, term, trunc, info = env.step(env.unwrapped.layout.noop)
            done = term or trunc
        if info["requests_arrived"] == 0:
            empty.append(s)
    assert 0 < len(empty) < len(seeds)  # the fixture is sparse: some windows empty, not all
    assert len(err) == 1, err
    assert f"{len(empty)} of {len(seeds)} eval/ windows" in err[0]
    assert ", ".join(map(str, empty)) in err[0]


def test_the_trace_presets_tile_their_held_out_part_and_a_synthetic_one_is_refused():
    # paper and azure replay the Azure 2019 day: its last quarter is 6 one-hour windows.
    for name in ("paper", "azure"):
        assert tiled_windows(load_scenario(name)) == [(64800.0 + 3600.0 * k, 3600.0)
                                                      for k in range(6)], name  # fmt: skip
    with pytest.raises(ValueError, match="needs a trace workload, and scenario 'small' has a 'mmpp'"):
        tiled_windows(load_scenario("small"))
