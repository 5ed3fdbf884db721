"""``agents.tune.run_sweep``'s input check (no Ray started). The Tune trials themselves are
exercised by the study on Ray (``tests/test_ray.py``: ``agents.study --ray`` and ``--address``,
which share run_sweep's Ray session, grid Tuner, training child and error line).

Loopback only, like tests/test_ray.py: run inside ``unshare -n`` (``make test-ray``).
"""

from __future__ import annotations

import pytest

from tests.test_ray import pytestmark  # noqa: F401  (the extra, marker, loopback-only skip)

JOB = {"algo": "maskable_ppo", "timesteps": 128, "n_envs": 1, "eval_freq": 0, "eval_episodes": 1,
       "checkpoint_freq": 0, "hp": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}}  # fmt: skip


def test_bad_job_is_refused_before_ray_starts(tmp_path):
    import ray

    from agents.tune import run_sweep

    with pytest.raises(ValueError, match="unknown key"):
        run_sweep([{**JOB, "lr": 1e-3}], storage_path=tmp_path)
    assert not ray.is_initialized()
