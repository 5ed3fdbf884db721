"""The Ray path on a real local cluster (no mocks): RLlib training, the policy adapter, and the
study's training jobs as Tune trials (``agents.study --ray`` / ``--address``).

Ray binds the machine's interface address unless it runs in a fresh network namespace, and these
tests may talk only to loopback, so they skip unless the only interface is ``lo``::

    unshare -n bash -c 'ip link set lo up && python -m pytest -q -m ray'

(``make test-ray``; ``.ci/run`` does it). The two-node cluster follows
``shared/ray-local-cluster.md``: two ``ray start --block`` processes, each in its own process
group, one shared auth token, and only those two groups are stopped at the end (never
``ray stop``). About 2 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

# `make test-ray` (and so CI) sets COLDSTART_REQUIRE_RAY=1: there a missing extra or a
# namespace that did not take is an error, not a skip.
REQUIRED = os.environ.get("COLDSTART_REQUIRE_RAY") == "1"
if REQUIRED:
    import ray  # noqa: F401
else:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

ROOT = Path(__file__).resolve().parents[1]
ONLY_LOOPBACK = {name for _, name in socket.if_nameindex()} <= {"lo"}
if REQUIRED and not ONLY_LOOPBACK:
    raise RuntimeError(
        "COLDSTART_REQUIRE_RAY=1 but interfaces other than lo exist: run in `unshare -n`"
    )
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(
        not ONLY_LOOPBACK,
        reason="Ray tests run only in a fresh network namespace (loopback only): "
        "unshare -n bash -c 'ip link set lo up && python -m pytest -q -m ray'",
    ),
]
TINY_STUDY = ["--scenarios", "small", "--windows", "2", "--timesteps", "256",
              "-o", "episode_s=300", "--hp", "n_steps=64", "--n-envs", "2", "--jobs", "2",
              "--reps", "200", "--no-progress"]  # fmt: skip
BATCH = 240  # two 120-step episodes of `small` per PPO iteration (v1: 40 intervals x 3 models)
SHORT = ("-o", "episode_s=400")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        kids = [c for c, pp in parent.items() if pp == todo[-1]]
        todo.pop()
        out += kids
        todo += kids
    return out


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Cluster:
    """A two-node Ray cluster on this machine (1 CPU per node), started and stopped by a test."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
        token = self.tmp / "token"
        token.write_text(secrets.token_hex(32))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        ray_bin = str(Path(sys.executable).parent / "ray")
        head = [ray_bin, "start", "--head", "--port", str(self.port), "--num-cpus", "1",
                "--include-dashboard=false", "--temp-dir", str(self.tmp / "ray"), "--block"]  # fmt: skip
        node = [ray_bin, "start", "--address", self.address, "--num-cpus", "1", "--block"]
        self.procs: list[subprocess.Popen] = []
        try:
            self._start(head, "head.log")
            self._wait(1)
            self._start(node, "node2.log")
            self._wait(2)
        except BaseException:
            self.stop()
            raise

    def _start(self, cmd: list[str], log: str) -> None:
        with open(self.tmp / log, "wb") as f:
            self.procs.append(
                subprocess.Popen(
                    cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
                )
            )

    def _wait(self, nodes: int, timeout_s: float = 90) -> None:
        code = (f"import ray; ray.init(address='{self.address}', log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))")  # fmt: skip
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"ray start exited; logs in {self.tmp}")
            r = subprocess.run(
                [sys.executable, "-c", code], env=self.env, capture_output=True, text=True
            )
            if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(nodes)]:
                return
            time.sleep(1)
        raise TimeoutError(f"{nodes} Ray node(s) not up after {timeout_s} s; logs in {self.tmp}")

    def env_runner_pids(self) -> list[int]:
        """PIDs of the RLlib env runners on this cluster's nodes (descendants of our two)."""
        pids = [c for p in self.procs for c in _children(p.pid)]
        return [c for c in pids if "SingleAgentEnvRunner" in _cmdline(c)]

    def stop(self) -> None:
        """SIGTERM to the two process groups this test started, then SIGKILL to whatever of
        them (by pid, listed before) is still there after a short drain."""
        ours = [(c, _start_time(c)) for p in self.procs for c in _children(p.pid)]
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8  # a node drains a few seconds after SIGTERM
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for pid, started in ours:  # the same process (start time), not a reused pid
            if started is not None and _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.stop()


def _train(cluster: Cluster, logdir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agents.rllib_train", "--address", cluster.address,
           "--num-env-runners", "2", "--train-batch-size", str(BATCH), "--logdir", str(logdir),
           "--eval-freq", str(BATCH), "--eval-episodes", "1", "--checkpoint-freq", str(BATCH),
           "--no-final-eval", *SHORT, *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    out = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    out.update({t: [(e.step, 0.0) for e in acc.Histograms(t)] for t in acc.Tags()["histograms"]})
    return out


def test_rllib_on_two_nodes_checkpoint_worker_death_resume_and_adapter(cluster, tmp_path, capsys):
    """2 env runners (one per node) through --address: two iterations checkpointed, no masked
    action taken, a killed env runner reported with its error, resume, then the adapter."""
    from agents.rllib_policy import is_rllib_checkpoint, load_rllib_policy

    proc = _train(cluster, tmp_path, "--timesteps", str(40 * BATCH))
    run_dirs: list[Path] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and proc.poll() is None:  # wait for the 2nd checkpoint
        run_dirs = list(tmp_path.glob("*/checkpoints/step_480/coldstart_meta.json"))
        if run_dirs:
            break
        time.sleep(0.2)
    assert run_dirs, f"no checkpoint after two iterations: {proc.communicate()}"
    runners = cluster.env_runner_pids()
    assert len(runners) == 2, runners
    os.kill(runners[0], signal.SIGKILL)  # a worker dies mid-run
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    line = [x for x in err.splitlines() if x.startswith("train.py: error:")]
    assert len(line) == 1 and "Ray worker failed" in line[0] and "--resume" in line[0], err
    run_dir = run_dirs[0].parents[2]
    ckpt = run_dir / "checkpoints" / "step_480"
    assert (ckpt / "rllib_checkpoint.json").is_file() and is_rllib_checkpoint(run_dir)

    tb = _scalars(run_dir)
    for key in ("cluster/p99_latency_s", "cluster/slo_violation_rate", "cluster/latency_s",
                "eval/mean_reward", "eval/baseline/episode_reward", "eval/references_beaten",
                "rollout/ep_rew_mean", "train/entropy"):  # fmt: skip
        assert key in tb, sorted(tb)
    masked = tb["rollout/masked_actions_taken"]
    assert len(masked) >= 2 and all(v == 0 for _, v in masked)

    # A checkpoint of another scenario (or seed) is refused before Ray starts.
    from agents.rllib_train import main

    for argv, expect in (
        (("--scenario", "paper"), "--scenario 'small'"),
        (("--seed", "7"), "--seed 0"),
    ):
        assert main(["--resume", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert expect in err and len(err.strip().splitlines()) == 1, err

    # Resume from the last complete checkpoint to 4 iterations, on the same cluster.
    proc = _train(cluster, tmp_path, "--resume", str(run_dir), "--timesteps", str(4 * BATCH))
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-3000:]
    last = sorted(run_dir.glob("checkpoints/step_*"), key=lambda p: int(p.name[5:]))[-1]
    assert int(last.name[5:]) >= 4 * BATCH
    assert json.loads((last / "coldstart_meta.json").read_text())["env_steps"] == int(last.name[5:])

    # The adapter loads it without a cluster and acts inside the mask on the raw env.
    policy = load_rllib_policy(run_dir)
    from agents.evaluation import evaluate, make_env

    env = make_env("small", "eval")
    policy.bind(env)
    obs, _ = env.reset(seed=3)
    for _ in range(30):
        action, _ = policy.predict(obs, deterministic=False)
        assert env.action_masks()[action]  # the chosen action is one the mask allows
        obs, *_ = env.step(action)
    res = evaluate("small", {"rllib": policy}, episodes=1, seed=10_000, split="eval",
                   overrides={"episode_s": 400})  # fmt: skip
    assert np.isfinite(res["policies"]["rllib"]["episode_reward"])
    assert res["policies"]["rllib"]["invalid_actions"] == 0
    # evaluate.py --model puts the checkpoint in the same table as a heuristic.
    out = subprocess.run(
        [sys.executable, "evaluate.py", "--model", str(run_dir), "--policies", "baseline",
         "--episodes", "1", "--no-progress", "-o", "episode_s=400"],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "| baseline" in out.stdout and "rllib" in out.stdout, out.stdout


def test_study_reports_a_failed_trial_on_the_cluster_then_finishes_on_local_ray(cluster, tmp_path):
    """The study's training jobs as Tune trials. With ``--address`` (the two-node cluster), one
    job whose run folder is torn (a model.zip that is not one): its trial errors, and the study
    reports it with train.py's error and exits 1, with no study.json. With the torn folder gone,
    ``--ray`` (a new local instance) and a second seed: 2 trials train, and the study writes its
    JSON and report. (Resuming a job from its model, and a finished job not retrained, are the
    backend-independent ``study_jobs`` rules, tested in tests/test_study.py.)"""
    out = tmp_path / "s"
    argv = [sys.executable, "-m", "agents.study", "--out", str(out), *TINY_STUDY]
    torn = out / "runs/small/seed0/torn"
    torn.mkdir(parents=True)
    (torn / "args.yml").write_text("algo: maskable_ppo\n")
    (torn / "model.zip").write_text("not a zip")

    p = subprocess.run([*argv, "--seeds", "1", "--address", cluster.address], capture_output=True,
                       text=True, env=cluster.env, cwd=ROOT, timeout=240)  # fmt: skip
    assert p.returncode == 1, p.stderr[-3000:]
    assert f"train small/seed0: --resume {torn}" in p.stdout, p.stdout
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("python -m agents.study: ")]
    assert len(err) == 1 and "1 training job(s) failed: small/seed0: " in err[0], p.stderr
    assert "exited with status 2" in err[0] and "not a model zip" in err[0], err
    lines = p.stderr.splitlines()
    again = lines[lines.index(err[0]) + 1]  # the command that resumes
    assert "the same command resumes" in err[0] and again.startswith("  python -m agents.study ")
    assert f"--address {cluster.address}" in again and "--seeds 1" in again
    assert not (out / "study.json").exists() and (out / "tune/train").is_dir()  # Tune's folder

    shutil.rmtree(torn)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([*argv, "--seeds", "2", "--ray"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=240)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    for k in (0, 1):
        assert f"train small/seed{k}: --scenario small" in p.stdout, p.stdout
        assert f"done  small/seed{k} in" in p.stdout
    data = json.loads((out / "study.json").read_text())
    sc = data["scenarios"]["small"]
    assert (sc["seeds"], sc["windows"], sc["train_steps"]) == (2, 2, 256)
    assert np.shape(sc["policies"]["maskable_ppo"]["scores"]) == (2, 2)
    assert set(data["wall_s"]["training"]) == {"small/seed0", "small/seed1"}
    assert data["wall_s"]["invocations"] == 2 and "--ray" in data["command"]
    assert "| **maskable_ppo** |" in (out / "report.md").read_text()
    for k in (0, 1):
        job = out / f"runs/small/seed{k}"
        assert json.loads((job / "done.json").read_text())["steps"] >= 256
        assert len(list(job.glob("*/model.zip"))) == 1
