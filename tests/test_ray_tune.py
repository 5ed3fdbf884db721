"""A 2-trial Ray Tune sweep of SB3 runs on a local Ray instance, then restored from its folder.

Loopback only, like tests/test_ray.py: run inside ``unshare -n`` (``make test-ray``).
"""

from __future__ import annotations

import json

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


def test_two_trial_sweep_then_restore(tmp_path, monkeypatch):
    from agents.tune import run_sweep

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    jobs = [{**JOB, "seed": 0}, {**JOB, "seed": 1, "override": {"episode_s": 600}}]
    rows = run_sweep(jobs, storage_path=tmp_path, name="s")
    assert [r["status"] for r in rows] == ["TERMINATED", "TERMINATED"], rows
    for row, job in zip(rows, jobs, strict=True):
        assert row["job"] == job and row["error"] is None
        results = json.loads(
            (tmp_path / "s").glob("job_*/runs/*/results.json").__next__().read_text()
        )
        assert "maskable_ppo" in results["policies"]
        assert row["references"] >= 1 and 0 <= row["references_beaten"] <= row["references"]
    # In job order: the seed is in the run folder's name, episode_s in its results.
    assert "__0__" in rows[0]["run_dir"] and "__1__" in rows[1]["run_dir"]
    logs = sorted((tmp_path / "s").glob("job_*/train.log"))
    assert len(logs) == 2 and all(p.read_text().count("Training maskable_ppo") == 1 for p in logs)

    # The same sweep again: restored from its folder, finished trials not run again.
    again = run_sweep(jobs, storage_path=tmp_path, name="s")
    assert again == rows
    assert all(p.read_text().count("Training maskable_ppo") == 1 for p in logs)
    with pytest.raises(ValueError, match="other jobs"):
        run_sweep(jobs[:1], storage_path=tmp_path, name="s")
