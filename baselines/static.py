"""Policies that ignore demand: always-warm over-provisioning and masked random actions."""

from __future__ import annotations

import numpy as np

from .base import LEAST_LOADED, NEAREST, ObsView, Policy, ScalingPolicy
from .base import DataPath as _DataPath


class Overprovision(ScalingPolicy):
    """Always-warm instances sized for peak, never scaled in: the costly state of practice.

    Source: the common production practice the serverless literature argues against (e.g.
    Shahrad et al. ATC 2020 and San Juan & Wong 2023 motivate cold-start work by the cost of
    keeping instances warm). Every model gets at least one instance; the remaining GPUs (of
    ``gpu_fraction`` of the cluster) go to the heavier models in proportion to their GPU time
    per request (``gpu_exec_s(max_batch) / max_batch``, largest remainder), so that the fleet
    is sized for the peak the cluster can hold. Instances are placed least-loaded (spread) and
    load from the nearest tier; the hosts' memory caches are left to LRU. With fewer GPUs than
    models, the heaviest models get one each.

    Args:
        instances: Fixed count per model: an int for every model, or a sequence of length M, or a
            dict ``{model name: count}``. ``None`` = computed as above.
        gpu_fraction: Share of the cluster's GPUs to fill when computing counts.
    """

    name = "overprovision"
    scale_in = False

    def __init__(self, env=None, instances=None, gpu_fraction: float = 1.0) -> None:
        if not 0 < gpu_fraction <= 1:
            raise ValueError(f"gpu_fraction must be in (0, 1], got {gpu_fraction!r}")
        self.instances = instances
        self.gpu_fraction = float(gpu_fraction)
        super().__init__(env, datapath=_DataPath(LEAST_LOADED, NEAREST, "hold"))

    def on_bind(self) -> None:
        f = self.facts
        names = [m.name for m in self._envs[0].scenario.sim.models]
        inst = self.instances
        if inst is None:
            self.counts = self.sized_for_peak(f, self.gpu_fraction)
        elif isinstance(inst, dict):
            unknown = sorted(set(inst) - set(names))
            if unknown:
                raise ValueError(f"overprovision: unknown model(s) {unknown}; models: {names}")
            self.counts = np.array([int(inst.get(n, 1)) for n in names], dtype=np.int64)
        elif np.ndim(inst) == 0:
            self.counts = np.full(f.M, int(inst), dtype=np.int64)
        else:
            if len(inst) != f.M:
                raise ValueError(f"overprovision: instances needs {f.M} counts, got {len(inst)}")
            self.counts = np.array(inst, dtype=np.int64)
        if np.any(self.counts < 0):
            raise ValueError(f"overprovision: instance counts must be >= 0, got {self.counts}")

    @staticmethod
    def sized_for_peak(f, gpu_fraction: float = 1.0) -> np.ndarray:
        """One per model, then the spare GPUs in proportion to GPU time per request."""
        n_gpu = max(1, int(np.floor(f.G * gpu_fraction + 1e-9)))
        weight = 1.0 / f.capacity_rps
        order = np.argsort(-weight, kind="stable")
        counts = np.zeros(f.M, dtype=np.int64)
        counts[order[: min(f.M, n_gpu)]] = 1
        spare = n_gpu - int(counts.sum())
        if spare > 0:
            share = spare * weight / weight.sum()
            extra = np.floor(share).astype(np.int64)
            rest = spare - int(extra.sum())
            extra[np.argsort(-(share - extra), kind="stable")[:rest]] += 1
            counts += extra
        return counts

    def targets(self, i: int, view: ObsView, st: dict):
        return self.counts


class RandomPolicy(Policy):
    """Masked random: each step samples uniformly among the valid actions of the focused model.

    ``deterministic`` is ignored (the policy is random by definition); the stream is the
    policy's own, seeded once at construction, so two policies built with the same seed and fed
    the same observations act alike.

    Source: the usual sanity floor of RL benchmarks (SB3's and Gymnasium's random agents), made
    mask-aware like sb3-contrib's MaskablePPO action sampling (which is what an untrained
    MaskablePPO does).

    Args:
        seed: Seed of the policy's own random stream (never the env's).
    """

    name = "random"

    def __init__(self, env=None, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        super().__init__(env)

    def plan(self, i, view, masks, st):
        return self.noop()

    def choose(self, i, m, st):
        valid = np.flatnonzero(self.env(i).action_masks())
        return int(valid[self.rng.integers(len(valid))])
