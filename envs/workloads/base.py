"""The generator protocol shared by synthetic and trace workloads, and small vectorised helpers.

Every generator is an object that is called once per episode (Jumanji's generator pattern)::

    workload = generator(rng, n_models=8, duration_s=3600.0, start_s=0.0)

All randomness comes from the injected :class:`numpy.random.Generator`; nothing here touches the
global ``random`` or ``np.random`` state, so one seed always gives one workload.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from envs.sim.workload import Workload

__all__ = [
    "WorkloadGenerator",
    "below",
    "check_call",
    "group_by_model",
    "merge_workloads",
    "sorted_uniform",
]


@runtime_checkable
class WorkloadGenerator(Protocol):
    """Anything that turns an episode's random stream into a :class:`Workload`."""

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        """Build the arrivals of one episode.

        Args:
            rng: The episode's random stream (the only source of randomness).
            n_models: Number of catalog models; the workload has one arrival array per model.
            duration_s: Length of the simulated window in seconds.
            start_s: Where in the source's time the window starts (a trace offset, or the
                time-of-day phase of a synthetic generator).
        """
        ...


def check_call(
    owner: str, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float
) -> None:
    """Validate the common call arguments of a generator, naming ``owner`` in errors.

    Raises:
        TypeError: ``rng`` is not a :class:`numpy.random.Generator`.
        ValueError: ``n_models`` < 1, ``duration_s`` not finite and > 0, ``start_s`` not finite.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{owner}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)) or n_models < 1:
        raise ValueError(f"{owner}: n_models must be an integer >= 1, got {n_models!r}")
    if not (isinstance(duration_s, (int, float, np.number)) and math.isfinite(duration_s)):
        raise ValueError(f"{owner}: duration_s must be a finite number > 0, got {duration_s!r}")
    if duration_s <= 0:
        raise ValueError(f"{owner}: duration_s must be a finite number > 0, got {duration_s!r}")
    if not (isinstance(start_s, (int, float, np.number)) and math.isfinite(start_s)):
        raise ValueError(f"{owner}: start_s must be a finite number, got {start_s!r}")


def below(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Map times that floating-point rounding pushed onto ``duration_s`` to the float just below.

    Only rounding is corrected here (a time computed as ``x * T`` with ``x < 1`` can round to
    ``T``); no arrival is ever dropped.
    """
    return np.minimum(times, np.nextafter(float(duration_s), 0.0))


def sorted_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` sorted Uniform(0, 1) order statistics in O(n), without a sort.

    Uses normalised exponential spacings: if ``E_1..E_{n+1}`` are i.i.d. Exp(1) and
    ``S_k = E_1 + ... + E_k`` then ``(S_1/S_{n+1}, ..., S_n/S_{n+1})`` are distributed as the
    order statistics of ``n`` uniforms.
    """
    if n <= 0:
        return np.empty(0, dtype=np.float64)
    c = np.cumsum(rng.standard_exponential(n + 1))
    return np.minimum(c[:n] / c[n], np.nextafter(1.0, 0.0))


def group_by_model(
    times: np.ndarray, models: np.ndarray, n_models: int, *, presorted: bool = False
) -> tuple[np.ndarray, ...]:
    """Split flat ``(time, model)`` pairs into one sorted time array per model.

    Args:
        times: Arrival times, shape ``(n,)``.
        models: Model index of each arrival in ``[0, n_models)``, shape ``(n,)``.
        n_models: Number of models (models with no arrivals get an empty array).
        presorted: ``times`` is already ascending, so a stable grouping keeps each model sorted
            and the per-model sort is skipped.

    Returns:
        A tuple of ``n_models`` float64 arrays, each sorted ascending.
    """
    times = np.asarray(times, dtype=np.float64)
    models = np.asarray(models, dtype=np.int64)
    if times.size == 0:
        return tuple(np.empty(0, dtype=np.float64) for _ in range(n_models))
    order = np.argsort(models, kind="stable")
    grouped = times[order]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(models, minlength=n_models))))
    out = []
    for i in range(n_models):
        part = grouped[bounds[i] : bounds[i + 1]]
        out.append(part if presorted else np.sort(part))
    return tuple(out)


def merge_workloads(parts: list[tuple[np.ndarray, ...]], n_models: int) -> tuple[np.ndarray, ...]:
    """Merge several per-model arrival tuples into one, each model's times sorted."""
    merged = []
    for i in range(n_models):
        arrays = [p[i] for p in parts if p[i].size]
        if not arrays:
            merged.append(np.empty(0, dtype=np.float64))
        elif len(arrays) == 1:
            merged.append(arrays[0])
        else:
            merged.append(np.sort(np.concatenate(arrays), kind="mergesort"))
    return tuple(merged)
