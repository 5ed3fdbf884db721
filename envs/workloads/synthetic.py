"""Synthetic workload generators: Poisson, bursty renewal, MMPP, diurnal, flash spikes, compositions.

Each generator is a frozen, validated dataclass implementing the
:class:`~envs.workloads.base.WorkloadGenerator` protocol. Traffic is split across the catalog's
models by a Zipf :class:`Popularity`; every draw comes from the episode's ``rng``.

Everything is vectorised: per model, arrival times are produced already sorted (order statistics
from exponential spacings, mapped through the inverse cumulative rate), so a one-hour window at
300 requests/s takes a few tens of milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.sim.workload import Workload
from envs.workloads.base import (
    WorkloadGenerator,
    below,
    check_call,
    group_by_model,
    merge_workloads,
    sorted_uniform,
)

__all__ = [
    "BurstyWorkload",
    "ComposeWorkload",
    "DiurnalWorkload",
    "FlashSpikeWorkload",
    "MMPPWorkload",
    "PoissonWorkload",
    "Popularity",
]


def _check(
    owner: object,
    name: str,
    lo: float,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Check that ``owner.name`` is a real number in the given range; return it as float."""
    cls = type(owner).__name__
    value = getattr(owner, name)
    lo_txt = f"{'>' if lo_open else '>='} {lo:g}"
    rng_txt = (
        lo_txt
        if hi == math.inf
        else f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    )
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{cls}.{name} must be a number {rng_txt}, got {value!r}")
    v = float(value)
    bad = (
        not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi)
    )
    if bad:
        raise ValueError(f"{cls}.{name} must be {rng_txt}, got {value!r}")
    return v


@dataclass(frozen=True)
class Popularity:
    """Zipf popularity of the catalog's models.

    Model ``i`` (0-based) gets weight ``1 / (i + 1) ** zipf_s``, normalised to sum to 1; with
    ``zipf_s = 0`` every model is equally popular. With ``shuffle=True`` the weights are permuted
    by a permutation drawn from the episode's rng, so which model is hot changes per episode.

    Attributes:
        zipf_s: Zipf exponent, >= 0.
        shuffle: Permute the weights with the episode rng.
    """

    zipf_s: float = 0.0
    shuffle: bool = False

    def __post_init__(self) -> None:
        _check(self, "zipf_s", 0.0, 100.0)

    def weights(self, n_models: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Probabilities of the ``n_models`` models, shape ``(n_models,)``, summing to 1.

        Raises:
            ValueError: ``shuffle`` is set but no ``rng`` is given.
        """
        w = 1.0 / np.arange(1, n_models + 1, dtype=np.float64) ** float(self.zipf_s)
        w /= w.sum()
        if self.shuffle:
            if rng is None:
                raise ValueError("Popularity.shuffle=True needs an rng to draw the permutation")
            w = w[rng.permutation(n_models)]
        return w


def _probs(gen: object, rng: np.random.Generator, n_models: int) -> np.ndarray:
    return Popularity(gen.zipf_s, gen.shuffle_models).weights(n_models, rng)  # type: ignore[attr-defined]


def _piecewise_poisson(
    rng: np.random.Generator,
    knots_t: np.ndarray,
    rates: np.ndarray,
    duration_s: float,
    probs: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Per-model Poisson arrivals for a piecewise-constant total rate, by time rescaling.

    Segment ``j`` covers ``[knots_t[j], knots_t[j+1])`` (the last one ends at ``duration_s``)
    with total rate ``rates[j]``; model ``i`` receives the fraction ``probs[i]`` of it. The
    cumulative rate ``L(t)`` is piecewise linear, so sorted uniform points on ``[0, L(T))`` map back
    exactly, and stay sorted, through its inverse.
    """
    lengths = np.diff(np.append(knots_t, duration_s))
    cum = np.concatenate(([0.0], np.cumsum(rates * lengths)))
    total = float(cum[-1])
    out = []
    for p in probs:
        n = int(rng.poisson(p * total)) if total > 0 else 0
        u = sorted_uniform(rng, n) * total
        idx = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(rates) - 1)
        r = rates[idx]
        safe = np.where(r > 0, r, 1.0)
        t = knots_t[idx] + np.where(r > 0, (u - cum[idx]) / safe, 0.0)
        out.append(below(np.maximum(t, 0.0), duration_s))
    return tuple(out)


@dataclass(frozen=True)
class PoissonWorkload:
    """Homogeneous Poisson arrivals: total rate ``rate_rps`` split by Zipf popularity.

    Each model ``i`` gets an independent Poisson stream of rate ``rate_rps * p_i``. ``start_s`` is
    ignored (the process is stationary).

    Attributes:
        rate_rps: Total arrival rate in requests/s, > 0.
        zipf_s: Popularity exponent (see :class:`Popularity`), >= 0.
        shuffle_models: Permute popularity per episode.
    """

    rate_rps: float
    zipf_s: float = 0.0
    shuffle_models: bool = False

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """Expected arrivals in ``duration_s`` and the field that sets them (a memory check)."""
        return float(self.rate_rps) * duration_s, "rate_rps"

    def __post_init__(self) -> None:
        _check(self, "rate_rps", 0.0, lo_open=True)
        Popularity(self.zipf_s, self.shuffle_models)

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        probs = _probs(self, rng, n_models)
        arr = _piecewise_poisson(
            rng, np.zeros(1), np.array([float(self.rate_rps)]), float(duration_s), probs
        )
        return Workload(arr, float(duration_s), repr(self))


@dataclass(frozen=True)
class BurstyWorkload:
    """A gamma renewal process per model: bursty (cv > 1) or regular (cv < 1) arrivals.

    Model ``i``'s inter-arrival times are i.i.d. Gamma with mean ``1 / (rate_rps * p_i)`` and
    coefficient of variation ``cv``: gamma shape ``k = 1 / cv**2``, scale ``cv**2 / (rate_rps * p_i)``.
    ``cv = 1`` is a Poisson process. The processes of different models are independent, so ``cv``
    holds per model (the merged stream of many models tends towards Poisson). Each process is
    started in equilibrium (first arrival ``U * X`` with ``X`` length-biased, i.e. Gamma(k + 1)),
    so the window shows no start-up transient. ``start_s`` is ignored (stationary).

    Attributes:
        rate_rps: Total arrival rate in requests/s, > 0.
        cv: Coefficient of variation of the inter-arrival times, in (0, 10].
        zipf_s: Popularity exponent, >= 0.
        shuffle_models: Permute popularity per episode.
    """

    rate_rps: float
    cv: float = 1.0
    zipf_s: float = 0.0
    shuffle_models: bool = False

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """Expected arrivals in ``duration_s`` and the field that sets them (a memory check)."""
        return float(self.rate_rps) * duration_s, "rate_rps"

    def __post_init__(self) -> None:
        _check(self, "rate_rps", 0.0, lo_open=True)
        _check(self, "cv", 0.0, 10.0, lo_open=True)
        Popularity(self.zipf_s, self.shuffle_models)

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        duration = float(duration_s)
        probs = _probs(self, rng, n_models)
        shape = 1.0 / float(self.cv) ** 2
        out = []
        for p in probs:
            rate = float(self.rate_rps) * p
            scale = 1.0 / (rate * shape)
            first = rng.random() * rng.gamma(shape + 1.0, scale)
            chunks = [np.array([first])]
            last = first
            expected = rate * duration
            while last < duration:
                remaining = rate * (duration - last)
                m = int(remaining + 6.0 * math.sqrt(remaining + 1.0) * max(1.0, self.cv) + 16)
                gaps = rng.gamma(shape, scale, size=min(m, 4 * int(expected) + 1024))
                times = last + np.cumsum(gaps)
                chunks.append(times)
                last = float(times[-1])
            t = np.concatenate(chunks)
            out.append(t[: np.searchsorted(t, duration, side="left")])
        return Workload(tuple(out), duration, repr(self))


@dataclass(frozen=True)
class MMPPWorkload:
    """Two-state Markov-modulated Poisson process shared by all models.

    One hidden chain alternates between a low and a high state with exponential sojourns of mean
    ``mean_low_s`` and ``mean_high_s``; the chain starts in its stationary distribution
    (high with probability ``mean_high_s / (mean_low_s + mean_high_s)``). While in a state the
    total rate is ``rate_low_rps`` or ``rate_high_rps``, split by popularity, so every model surges
    together. ``start_s`` is ignored (stationary).

    Attributes:
        rate_low_rps: Total rate in the low state, >= 0.
        rate_high_rps: Total rate in the high state, > 0 and >= rate_low_rps.
        mean_low_s: Mean sojourn in the low state (s), > 0.
        mean_high_s: Mean sojourn in the high state (s), > 0.
        zipf_s: Popularity exponent, >= 0.
        shuffle_models: Permute popularity per episode.
    """

    rate_low_rps: float
    rate_high_rps: float
    mean_low_s: float
    mean_high_s: float
    zipf_s: float = 0.0
    shuffle_models: bool = False

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """Arrivals in ``duration_s`` if the chain stayed high (an upper estimate), and the field
        that sets them (a memory check)."""
        return float(self.rate_high_rps) * duration_s, "rate_high_rps"

    def __post_init__(self) -> None:
        low = _check(self, "rate_low_rps", 0.0)
        _check(self, "rate_high_rps", low, lo_open=low == 0.0)
        _check(self, "mean_low_s", 0.0, lo_open=True)
        _check(self, "mean_high_s", 0.0, lo_open=True)
        Popularity(self.zipf_s, self.shuffle_models)

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        duration = float(duration_s)
        probs = _probs(self, rng, n_models)
        means = np.array([self.mean_low_s, self.mean_high_s], dtype=np.float64)
        state0 = int(rng.random() < means[1] / means.sum())
        ends: list[np.ndarray] = []
        elapsed, n_done = 0.0, 0
        while elapsed < duration:
            k = int(2.0 * (duration - elapsed) / means.sum()) + 16
            states = (state0 + n_done + np.arange(k)) % 2
            seg = np.cumsum(rng.standard_exponential(k) * means[states]) + elapsed
            ends.append(seg)
            elapsed, n_done = float(seg[-1]), n_done + k
        seg_end = np.concatenate(ends)
        n_seg = int(np.searchsorted(seg_end, duration, side="left")) + 1
        knots = np.concatenate(([0.0], seg_end[: n_seg - 1]))
        rates = np.where(
            (state0 + np.arange(n_seg)) % 2 == 1,
            float(self.rate_high_rps),
            float(self.rate_low_rps),
        )
        arr = _piecewise_poisson(rng, knots, rates, duration, probs)
        return Workload(arr, duration, repr(self))


@dataclass(frozen=True)
class DiurnalWorkload:
    """Non-homogeneous Poisson arrivals with a sinusoidal daily rate, by thinning.

    The total rate at simulated time ``t`` is
    ``mean_rate_rps * (1 + amplitude * cos(2*pi*(start_s + t - peak_at_s) / period_s))``, split by
    popularity: ``start_s`` is the time of day (phase) at which the window starts, and the rate
    peaks at ``mean_rate_rps * (1 + amplitude)`` when ``start_s + t = peak_at_s`` (mod period).

    Attributes:
        mean_rate_rps: Rate averaged over a period, > 0.
        amplitude: Relative swing, in [0, 1] (0 = Poisson, 1 = rate touches 0 at the trough).
        period_s: Period in seconds, > 0 (a day by default).
        peak_at_s: Time of the peak within the period, in seconds.
        zipf_s: Popularity exponent, >= 0.
        shuffle_models: Permute popularity per episode.
    """

    mean_rate_rps: float
    amplitude: float = 0.5
    period_s: float = 86400.0
    peak_at_s: float = 14.0 * 3600.0
    zipf_s: float = 0.0
    shuffle_models: bool = False

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """Candidates thinning draws in ``duration_s`` (at the peak rate, an upper estimate of
        the arrivals), and the field that sets them (a memory check)."""
        return float(self.mean_rate_rps) * (1.0 + float(self.amplitude)) * duration_s, (
            "mean_rate_rps"
        )

    def __post_init__(self) -> None:
        _check(self, "mean_rate_rps", 0.0, lo_open=True)
        _check(self, "amplitude", 0.0, 1.0)
        _check(self, "period_s", 0.0, lo_open=True)
        _check(self, "peak_at_s", -math.inf)
        Popularity(self.zipf_s, self.shuffle_models)

    def rate_at(self, t_s: np.ndarray | float, start_s: float = 0.0) -> np.ndarray:
        """Total rate (requests/s) at simulated time(s) ``t_s`` of a window starting at ``start_s``."""
        phase = 2.0 * np.pi * (start_s + np.asarray(t_s, dtype=np.float64) - self.peak_at_s)
        return self.mean_rate_rps * (1.0 + self.amplitude * np.cos(phase / self.period_s))

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        duration = float(duration_s)
        probs = _probs(self, rng, n_models)
        peak = float(self.mean_rate_rps) * (1.0 + float(self.amplitude))
        out = []
        for p in probs:
            cand = below(
                sorted_uniform(rng, int(rng.poisson(p * peak * duration))) * duration, duration
            )
            keep = rng.random(cand.size) * peak < self.rate_at(cand, float(start_s))
            out.append(cand[keep])
        return Workload(tuple(out), duration, repr(self))


@dataclass(frozen=True)
class FlashSpikeWorkload:
    """Base Poisson traffic plus flash-crowd spikes at random (episode-seeded) times.

    Spike starts form a Poisson process with mean spacing ``spike_every_s`` (started
    ``spike_duration_s`` before the window so that a spike may already be running at ``t = 0``).
    Each spike lasts ``spike_duration_s`` and adds ``spike_rate_rps`` to the total rate while it
    runs (overlapping spikes add up). The extra traffic is split by popularity, or, with
    ``spike_on_one_model=True``, each spike hits a single model drawn by popularity.
    ``start_s`` is ignored (stationary).

    Attributes:
        base_rate_rps: Total rate outside spikes, >= 0.
        spike_rate_rps: Extra total rate during a spike, > 0.
        spike_every_s: Mean time between spike starts (s), > 0.
        spike_duration_s: Length of a spike (s), > 0.
        zipf_s: Popularity exponent, >= 0.
        spike_on_one_model: Send each spike's extra traffic to one model.
        shuffle_models: Permute popularity per episode.
    """

    base_rate_rps: float
    spike_rate_rps: float
    spike_every_s: float
    spike_duration_s: float
    zipf_s: float = 0.0
    spike_on_one_model: bool = False
    shuffle_models: bool = False

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """Expected arrivals in ``duration_s`` (base traffic plus the expected spike time), and
        the field that sets most of them (a memory check)."""
        base = float(self.base_rate_rps) * duration_s
        d = float(self.spike_duration_s)
        spikes = float(self.spike_rate_rps) * d * (duration_s + d) / float(self.spike_every_s)
        return base + spikes, "base_rate_rps" if base >= spikes else "spike_rate_rps"

    def __post_init__(self) -> None:
        _check(self, "base_rate_rps", 0.0)
        _check(self, "spike_rate_rps", 0.0, lo_open=True)
        _check(self, "spike_every_s", 0.0, lo_open=True)
        _check(self, "spike_duration_s", 0.0, lo_open=True)
        Popularity(self.zipf_s, self.shuffle_models)

    def spikes(self, rng: np.random.Generator, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Draw spike intervals clipped to ``[0, duration_s]``: (starts, ends)."""
        span = float(duration_s) + float(self.spike_duration_s)
        n = int(rng.poisson(span / float(self.spike_every_s)))
        s = sorted_uniform(rng, n) * span - float(self.spike_duration_s)
        e = np.minimum(s + float(self.spike_duration_s), float(duration_s))
        return np.maximum(s, 0.0), e

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        duration = float(duration_s)
        probs = _probs(self, rng, n_models)
        starts, ends = self.spikes(rng, duration)
        base, spike = float(self.base_rate_rps), float(self.spike_rate_rps)
        if not self.spike_on_one_model:
            ev_t = np.concatenate((starts, ends))
            ev_d = np.concatenate((np.ones(starts.size), -np.ones(ends.size)))
            order = np.argsort(ev_t, kind="stable")
            knots = np.concatenate(([0.0], ev_t[order]))
            active = np.concatenate(([0.0], np.cumsum(ev_d[order])))
            arr = _piecewise_poisson(rng, knots, base + spike * active, duration, probs)
            return Workload(arr, duration, repr(self))
        parts = [_piecewise_poisson(rng, np.zeros(1), np.array([base]), duration, probs)]
        if starts.size:
            target = rng.choice(n_models, size=starts.size, p=probs)
            counts = rng.poisson(spike * (ends - starts))
            which = np.repeat(np.arange(starts.size), counts)
            t = below(starts[which] + rng.random(which.size) * (ends - starts)[which], duration)
            parts.append(group_by_model(t, target[which], n_models))
        return Workload(merge_workloads(parts, n_models), duration, repr(self))


@dataclass(frozen=True)
class ComposeWorkload:
    """The superposition of several generators' workloads (per model, arrivals merged).

    Each part is called with its own independent child stream (``rng.spawn``), the same
    ``n_models``, ``duration_s`` and ``start_s``.

    Attributes:
        parts: The generators to merge (at least one).
    """

    parts: Sequence[WorkloadGenerator]

    def expected_requests(self, duration_s: float) -> tuple[float, str]:
        """The parts' sum, naming the largest part's field as ``parts[i].<field>`` (trace parts,
        bounded by their file, count 0)."""
        total, best, name = 0.0, -1.0, "parts"
        for i, p in enumerate(self.parts):
            if hasattr(p, "expected_requests"):
                n, fld = p.expected_requests(duration_s)
                total += n
                if n > best:
                    best, name = n, f"parts[{i}].{fld}"
        return total, name

    def __post_init__(self) -> None:
        parts = tuple(self.parts)
        if not parts:
            raise ValueError("ComposeWorkload.parts must hold at least 1 generator, got 0")
        for i, p in enumerate(parts):
            if not callable(p):
                raise ValueError(
                    f"ComposeWorkload.parts[{i}] must be a workload generator, got {p!r}"
                )
        object.__setattr__(self, "parts", parts)

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call(type(self).__name__, rng, n_models, duration_s, start_s)
        children = rng.spawn(len(self.parts))
        loads = [
            p(c, n_models, duration_s, start_s) for p, c in zip(self.parts, children, strict=True)
        ]
        for i, w in enumerate(loads):
            if w.n_models != n_models:
                raise ValueError(
                    f"ComposeWorkload.parts[{i}] returned {w.n_models} models, expected {n_models}"
                )
        merged = merge_workloads([w.arrivals_s for w in loads], n_models)
        source = "compose(" + "; ".join(w.source for w in loads) + ")"
        return Workload(merged, float(duration_s), source)
