"""The workload a simulation replays: per-model request arrival times.

A :class:`Workload` is made whole before a run (Jumanji's generator pattern) by an object from
:mod:`envs.workloads`. The simulator never draws arrivals itself, so a policy's choices can never
change the requests it faces: every policy is compared on the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """Request arrivals for every model of a catalog over ``[0, duration_s)``.

    Attributes:
        arrivals_s: One float64 array per catalog model (same order as the catalog), shape
            ``(n_requests_of_model,)``, sorted ascending, every value in ``[0, duration_s)``.
        duration_s: Length of the workload window in simulated seconds.
        source: A short human-readable description (generator name, trace file, window).
    """

    arrivals_s: tuple[np.ndarray, ...]
    duration_s: float
    source: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(
                f"Workload.duration_s must be a finite number > 0, got {self.duration_s!r}"
            )
        fixed = []
        for i, arr in enumerate(self.arrivals_s):
            a = np.ascontiguousarray(arr, dtype=np.float64)
            if a.ndim != 1:
                raise ValueError(f"Workload.arrivals_s[{i}] must be 1-D, got shape {a.shape}")
            if a.size:
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"Workload.arrivals_s[{i}] holds non-finite times")
                if a[0] < 0 or a[-1] >= self.duration_s:
                    raise ValueError(
                        f"Workload.arrivals_s[{i}] must lie in [0, {self.duration_s}), "
                        f"got [{a[0]}, {a[-1]}]"
                    )
                if np.any(np.diff(a) < 0):
                    raise ValueError(f"Workload.arrivals_s[{i}] must be sorted ascending")
            fixed.append(a)
        object.__setattr__(self, "arrivals_s", tuple(fixed))

    @property
    def n_models(self) -> int:
        return len(self.arrivals_s)

    @property
    def n_requests(self) -> int:
        return int(sum(a.size for a in self.arrivals_s))

    def counts(self) -> np.ndarray:
        """Requests per model, shape ``(n_models,)``."""
        return np.array([a.size for a in self.arrivals_s], dtype=np.int64)
