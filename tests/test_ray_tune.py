"""A 2-trial Ray Tune sweep of SB3 runs on a local Ray instance, then restored from its folder.

Loopback only, like tests/test_ray.py: run inside ``unshare -n`` (``make test-ray``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_ray import pytestmark  # noqa: E402,F401  (the extra, marker, loopback-only skip)

JOB = {"algo": "maskable_ppo", "timesteps": 128, "n_envs": 1, "eval_freq": 0, "eval_episodes": 1,
       "checkpoint_freq": 0, "hp": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}}  # fmt: skip


def test_bad_job_is_refused_before_ray_starts(tmp_path):
    import ray

    from agents.tune import run_sweep

    with pytest.raises(ValueError, match="unknown key"):
        run_sweep([{**JOB, "lr": 1e-3}], storage_path=tmp_path)
    assert not ray.is_initialized()


def test_two_trial_sweep_resumed_after_a_failed_trial(tmp_path, monkeypatch):
    """Job 1's scenario file does not exist yet, so its trial errors; once the file is there,
    the same call restores the sweep: job 0 (finished) is kept, job 1 runs again and finishes."""
    from agents.tune import run_sweep

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    scenario = tmp_path / "mine.yaml"
    jobs = [{**JOB, "seed": 0}, {**JOB, "seed": 1, "scenario": str(scenario)}]
    rows = run_sweep(jobs, storage_path=tmp_path, name="s")
    assert [r["status"] for r in rows] == ["TERMINATED", "ERROR"], rows
    assert "exited with status 2" in rows[1]["error"] and "mine.yaml" in rows[1]["error"]
    first = rows[0]
    assert first["job"] == jobs[0] and first["error"] is None
    results = json.loads((Path(first["run_dir"]) / "results.json").read_text())
    assert first["episode_reward"] == results["policies"]["maskable_ppo"]["episode_reward"]
    assert first["references"] >= 1 and 0 <= first["references_beaten"] <= first["references"]
    log0 = tmp_path / "s" / "job_000" / "train.log"
    assert log0.read_text().count("Training maskable_ppo") == 1

    from envs.scenarios import PRESET_DIR

    scenario.write_text(
        (PRESET_DIR / "small.yaml").read_text().replace("episode_s: 1200", "episode_s: 600")
    )
    again = run_sweep(jobs, storage_path=tmp_path, name="s")
    assert [r["status"] for r in again] == ["TERMINATED", "TERMINATED"], again
    assert again[0] == first  # kept, not run again
    assert log0.read_text().count("Training maskable_ppo") == 1
    assert "__1__" in again[1]["run_dir"]  # the seed is in the run folder's name
    done = json.loads((Path(again[1]["run_dir"]) / "results.json").read_text())
    assert done["episode_s"] == 600.0
    with pytest.raises(ValueError, match="other jobs"):
        run_sweep(jobs[:1], storage_path=tmp_path, name="s")
