"""What the benchmarks that play policies on a study's windows share (``benchmarks.headroom``,
``benchmarks.teacher_grid``): one policy's row from :func:`agents.evaluation.evaluate`'s result,
and the JSON they print as their last line and may also write to a file."""

from __future__ import annotations

import json
import os

import numpy as np


def episode_scores(r: dict) -> np.ndarray:
    """A policy's episode rewards from ``evaluate``'s row, as one run: shape ``(1, windows)``."""
    return np.array([[e["episode_reward"] for e in r["per_episode"]]])


def policy_row(r: dict) -> dict:
    """One policy's figures: mean reward, reward IQM with the study's interval for a single run
    (hierarchical: a bootstrap over windows), drop rate, drop-aware p99, cost."""
    from agents.stats import iqm_interval

    scores = episode_scores(r)
    point, (lo, hi) = iqm_interval(scores, scheme="hierarchical")
    return {
        "mean_reward": round(float(scores.mean()), 1),
        "reward_iqm": round(point, 1), "reward_ci": [round(lo, 1), round(hi, 1)],
        "drop_rate": round(r["drop_rate"], 6), "p99_latency_s": round(r["p99_latency_s"], 4),
        "cost_usd": round(r["cost_usd"], 3),
    }  # fmt: skip


def check_json_path(parser, path: str | None) -> None:
    """``--json PATH``: refused (``parser.error``, one line, before any work) when its folder
    does not exist."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        parser.error(f"--json {path}: no such folder {os.path.dirname(os.path.abspath(path))!r}")


def emit(out: dict, path: str | None) -> dict:
    """Print ``out`` as the last line (JSON) and write it to ``path`` if given; returns it."""
    print(json.dumps(out))
    if path:
        with open(path, "w") as fh:
            json.dump(out, fh, indent=1)
    return out
