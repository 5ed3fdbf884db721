"""A digest of what ``coldstart/ServerlessGPU-v1`` returns, to check a speed-up changed nothing.

    python -m benchmarks.trajectory_digest                # small, paper, azure
    python -m benchmarks.trajectory_digest --steps 500    # shorter

Plays uniform-random actions (seeded) on each preset from ``reset(seed=1)``, resetting at
truncation, and hashes every observation (bytes), reward and ``info`` (``repr`` of its items
in order, the final step's episode metrics included) with SHA-256. Run it on two commits: equal
digests mean the two give the same trajectories bit for bit. The last line is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs import ENV_ID

PRESETS = ("small", "paper", "azure")


def digest(scenario: str, steps: int, seed: int = 1) -> str:
    """SHA-256 hex digest of ``steps`` uniform-random steps on ``scenario``."""
    env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True).unwrapped
    h = hashlib.sha256()
    obs, _ = env.reset(seed=seed)
    h.update(obs.tobytes())
    for a in np.random.default_rng(seed).integers(0, env.action_space.n, steps).tolist():
        obs, r, term, trunc, info = env.step(a)
        h.update(obs.tobytes())
        h.update(repr((float(r), term, trunc, sorted(info.items()))).encode())
        if trunc:
            obs, _ = env.reset()
            h.update(obs.tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="steps per preset (default 3000)")
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    res = {sc: digest(sc, a.steps) for sc in PRESETS}
    for sc, d in res.items():
        print(f"{sc:8s} {d}")
    print(json.dumps({"steps": a.steps, **res}))


if __name__ == "__main__":
    main()
