"""Table-driven bad input to both command-line tools (issue 12): each case exits 2 with exactly
one line on stderr that names the flag, field or file and what was expected, writes nothing and
shows no traceback.

The tools' ``main(argv)`` run in-process (an uncaught exception fails the test, as a traceback
would); a few cases also run as real processes, where a traceback would show on stderr.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import evaluate
from agents import training

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["--scenario", "small", "--policies", "baseline", "--episodes", "1", "--no-progress"]
SHORT = {"episode_s": 60}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs shared by the cases: a corrupt gzip trace, a scenario file with a scalar for a
    list, a normalised PPO model (zip with its statistics inside), the same model with corrupt
    statistics inside, and an older-style zip whose statistics file beside it is corrupt."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from agents.algos import get_algo
    from agents.loading import STATS_ENTRY, save_agent
    from agents.wrappers import EnvFactory

    d = tmp_path_factory.mktemp("inputs")
    good = gzip.compress(b"t,model\n0.5,a\n1.5,b\n" * 50)
    (d / "bad.csv.gz").write_bytes(good[:12] + bytes(len(good) - 20) + good[-8:])
    (d / "scalar_hosts.yaml").write_text("models: [bert-base]\nhosts: 3\n"
                                         "workload: {kind: poisson, rate_rps: 1}\n")  # fmt: skip
    (d / "plain_file").write_text("x")
    factory = EnvFactory("small", "train", SHORT)
    venv = VecNormalize(DummyVecEnv([factory]))
    model = get_algo("ppo").cls("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0)
    model.coldstart_meta = {"algo": "ppo", "env_id": "coldstart/ServerlessGPU-v1",
                            "scenario": "small", "overrides": SHORT, "normalize": True,
                            "actions": "native"}  # fmt: skip
    run = d / "run"
    save_agent(model, run / "model.zip", venv)
    (run / "args.yml").write_text("algo: ppo\nscenario: small\n")
    for name, keep_entry in (("corrupt_inside", True), ("corrupt_beside", False)):
        folder = d / name
        folder.mkdir()
        with zipfile.ZipFile(run / "model.zip") as src, zipfile.ZipFile(
            folder / "model.zip", "w"
        ) as dst:
            for n in src.namelist():
                if n != STATS_ENTRY:
                    dst.writestr(n, src.read(n))
                elif keep_entry:
                    dst.writestr(n, b"not a pickle")
        (folder / "vecnormalize.pkl").write_bytes(b"\x80\x04garbage")
        (folder / "args.yml").write_text("algo: ppo\nscenario: small\n")
    venv.close()
    return d


# (tool, argv, fragments the one line must contain); {d} is the inputs folder.
CASES = [
    ("evaluate", ["-o", "reward__drop_usd=.nan"], ["reward.drop_usd", "finite"]),
    ("evaluate", ["-o", "hosts=[]"], ["hosts", "non-empty list"]),
    ("evaluate", ["-o", "hosts=null"], ["hosts", "non-empty list"]),
    ("evaluate", ["-o", "hosts=3"], ["hosts", "non-empty list"]),
    ("evaluate", ["-o", "scale_deltas=5"], ["scale_deltas", "list of distinct integers"]),
    ("evaluate", ["-o", "hosts__n_gpus=3"], ["hosts__n_gpus", "not a section"]),
    ("evaluate", ["--scenario", "{d}/scalar_hosts.yaml"], ["scalar_hosts.yaml", "hosts"]),
    ("evaluate", ["-o", "workload__rate_high_rps=1.0e+9"], ["rate_high_rps", "MAX_REQUESTS"]),
    ("evaluate", ["-o", "span_s=.inf"], ["span_s", "finite number"]),
    ("evaluate", ["-o", "episode_s"], ["--override", "KEY=VALUE"]),
    ("evaluate", ["--trace", "{d}/bad.csv.gz", "--time-col", "t"], ["bad.csv.gz", "corrupt gzip"]),
    ("evaluate", ["--seed", "-1"], ["--seed", ">= 0"]),
    ("evaluate", ["--episodes", "x"], ["--episodes", "invalid int value"]),
    ("evaluate", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("evaluate", ["--json", "{d}/plain_file/r.json"], ["--json", "is a file, not a folder"]),
    ("evaluate", ["--json", "{d}"], ["--json", "is a folder"]),
    ("evaluate", ["--out", "{d}/plain_file"], ["--out", "not a folder"]),
    ("evaluate", ["--model", "{d}/corrupt_inside"], ["corrupt_inside", "VecNormalize"]),
    ("evaluate", ["--model", "{d}/corrupt_beside"], ["vecnormalize.pkl", "VecNormalize"]),
    # v1's spaces do not depend on the scenario (a small-trained agent may act on azure); other
    # scale deltas change the number of actions, which no agent can bridge.
    ("evaluate", ["--scenario", "azure", "-o", "scale_deltas=[-1, 0, 1]", "--model", "{d}/run"],
     ["scenario 'small'", "'azure'", "actions"]),  # fmt: skip
    ("train", ["-o", "span_s=.inf"], ["span_s", "finite number"]),
    ("train", ["--scenario", "small", "-o", "workload__rate_high_rps=1.0e+9"],
     ["rate_high_rps", "MAX_REQUESTS"]),  # small: an MMPP workload (paper, the default, replays a trace)
    ("train", ["-o", "hosts=3"], ["hosts", "non-empty list"]),
    ("train", ["--trace", "{d}/bad.csv.gz", "--time-col", "t"], ["--trace", "corrupt gzip"]),
    ("train", ["--hp", "n_epochs=-1"], ["n_epochs", "integer >= 1"]),
    ("train", ["--hp", "gamma=.nan"], ["gamma", "finite"]),
    ("train", ["--hp", "gamma=1.5"], ["gamma", "in [0, 1]"]),
    ("train", ["--seed", "-1"], ["--seed", ">= 0"]),
    ("train", ["--logdir", "{d}/plain_file/runs"], ["--logdir", "is a file, not a folder"]),
    ("train", ["--keep-checkpoints", "-1"], ["--keep-checkpoints", ">= 0"]),
    ("train", ["--device", "cuda:99"], ["--device", "cuda:99"]),
    ("train", ["--device", "tpu"], ["--device", "not a torch device"]),
    ("train", ["--resume", "{d}/corrupt_inside"], ["--resume", "VecNormalize"]),
    ("train", ["--resume", "{d}/corrupt_beside"], ["--resume", "vecnormalize.pkl"]),
]


def _argv(tool: str, argv: list[str], d: Path, out: Path) -> list[str]:
    argv = [a.replace("{d}", str(d)) for a in argv]
    if tool == "evaluate":
        return EVAL + argv if "--scenario" not in argv else EVAL[2:] + argv
    logdir = [] if "--logdir" in argv else ["--logdir", str(out / "runs")]
    return ["--no-progress", *logdir, *argv]


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("tool, argv, fragments", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(
    tool, argv, fragments, files, tmp_path, monkeypatch, capsys
):
    import agents.evaluation

    def no_episode(*a, **k):
        raise AssertionError("a policy ran before the bad input was reported")

    monkeypatch.setattr(agents.evaluation, "run_episode", no_episode)
    monkeypatch.chdir(tmp_path)
    before = _listing(files)
    main = evaluate.main if tool == "evaluate" else training.main
    rc = main(_argv(tool, argv, files, tmp_path))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{tool}.py: error: "), lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    assert "Traceback" not in err and out == ""
    assert _listing(tmp_path) == [] and _listing(files) == before  # nothing written


@pytest.mark.parametrize(
    "script, argv, fragment",
    [
        ("evaluate.py", ["--episodes", "x"], "--episodes"),
        ("evaluate.py", ["--scenario", "small", "-o", "hosts=3"], "hosts"),
        ("train.py", ["-o", "scale_deltas=5"], "scale_deltas"),
    ],
)
def test_real_process_one_line(script, argv, fragment, tmp_path):
    p = subprocess.run(
        [sys.executable, str(ROOT / script), *argv], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and fragment in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not any(tmp_path.iterdir())
