"""Trace replay: turn a window of a real trace into a :class:`Workload`.

Time semantics of :class:`TraceWorkload` (``time_scale`` = trace seconds per simulated second)::

    trace window  [start_s, start_s + duration_s * time_scale)   (trace seconds)
    simulated     t_sim = (t_trace - start_s) / time_scale  in [0, duration_s)

So ``start_s`` is an offset into the trace in *trace* seconds and ``duration_s`` is the simulated
length. ``time_scale = 1`` replays in real time, ``time_scale = 2`` plays two trace seconds per
simulated second (twice the request rate). A window that leaves the trace is an error, never
silently clipped, unless ``pad_s`` allows it to reach that far past the trace's end: the part
after the end is then replayed as silence (the trace recorded no request there).

Loading is in :mod:`envs.workloads.trace_io`; its public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np

from envs.sim.workload import Workload
from envs.workloads.base import below, check_call, group_by_model
from envs.workloads.synthetic import Popularity
from envs.workloads.trace_io import (
    LAYOUTS,
    Trace,
    TraceFormatError,
    TraceOrderWarning,
    load_trace,
    shipped_trace_path,
    split_windows,
)

__all__ = [
    "LAYOUTS",
    "MAPPINGS",
    "SUBMINUTE",
    "Trace",
    "TraceFormatError",
    "TraceOrderWarning",
    "TraceWorkload",
    "function_to_model",
    "load_trace",
    "shipped_trace_path",
    "split_windows",
]

MAPPINGS = ("popularity", "hash", "round_robin", "sample", "per_request")
SUBMINUTE = ("uniform", "poisson", "equidistant")


def function_to_model(
    trace: Trace, n_models: int, mapping: str, mapping_seed: int = 0, min_requests: int = 1
) -> np.ndarray:
    """The model of each trace function, shape ``(n_functions,)``; independent of any episode rng.

    Rules:
        ``popularity``: functions ranked by total requests over the whole trace (descending, ties
        by function id) are dealt to models like cards: rank ``r`` goes to model
        ``r mod n_models``. Model 0 gets the busiest function, model 1 the second, ..., so model
        load is non-increasing in the model index; with ``n_models >= n_functions`` every function
        has its own model.
        ``hash``: ``blake2b(f"{mapping_seed}:{function_id}") mod n_models`` (stable across runs,
        platforms and trace cuts; ``mapping_seed`` salts it).
        ``round_robin``: function ``i`` in file order (first appearance) goes to ``i mod n_models``.
        ``sample``: one function per model, as in a serverless platform where each deployed
        model serves one function: ``n_models`` functions are drawn without replacement by
        ``numpy.random.default_rng(mapping_seed)`` among those with at least ``min_requests``
        requests in the whole trace, and ordered by popularity (model 0 gets the busiest drawn
        function). Functions not drawn map to -1 and are not replayed.
    """
    n = trace.n_functions
    if mapping == "popularity":
        totals = trace.function_totals()
        ranked = sorted(range(n), key=lambda i: (-int(totals[i]), trace.function_ids[i], i))
        out = np.empty(n, dtype=np.int64)
        out[np.array(ranked, dtype=np.int64)] = np.arange(n, dtype=np.int64) % n_models
        return out
    if mapping == "hash":
        return np.array(
            [
                int.from_bytes(
                    hashlib.blake2b(f"{mapping_seed}:{fid}".encode(), digest_size=8).digest(),
                    "little",
                )
                % n_models
                for fid in trace.function_ids
            ],
            dtype=np.int64,
        )
    if mapping == "round_robin":
        return np.arange(n, dtype=np.int64) % n_models
    if mapping == "sample":
        totals = trace.function_totals()
        eligible = np.flatnonzero(totals >= min_requests)
        if eligible.size < n_models:
            raise ValueError(
                f"TraceWorkload mapping='sample': only {eligible.size} functions of {trace.path} "
                f"have >= min_requests={min_requests} requests, {n_models} models need one each"
            )
        chosen = np.random.default_rng(mapping_seed).choice(eligible, size=n_models, replace=False)
        chosen = sorted(chosen.tolist(), key=lambda i: (-int(totals[i]), trace.function_ids[i]))
        out = np.full(n, -1, dtype=np.int64)
        out[np.array(chosen, dtype=np.int64)] = np.arange(n_models, dtype=np.int64)
        return out
    raise ValueError(f"unknown function mapping {mapping!r}; valid: {MAPPINGS[:4]}")


class TraceWorkload:
    """Replays windows of a trace as workloads (implements ``WorkloadGenerator``).

    See the module docstring for the window and ``time_scale`` arithmetic.

    Function -> model mapping: one of :data:`MAPPINGS`; the first three are fixed rules that do not
    use the episode rng (see :func:`function_to_model`): the same function always feeds the same
    model. ``per_request`` instead sends every request to a model drawn from a Zipf
    ``Popularity(request_zipf_s)`` with the episode rng; it is meant for single-stream traces such
    as the LLM trace, which the other rules would send to model 0 only.

    Sub-minute times (per-minute count layouts only; the episode rng is used), for a minute holding
    ``k`` invocations of a function:
        ``uniform``: the ``k`` times are i.i.d. uniform in the minute (then sorted).
        ``poisson``: identical to ``uniform``: given its count, a Poisson process's points in an
        interval are i.i.d. uniform, so this is exactly the Poisson process conditioned on the
        trace's counts (the name is kept for readability).
        ``equidistant``: evenly spaced at ``(j + 0.5) / k`` of the minute, ``j = 0..k-1``
        (no randomness).
    For a window boundary inside a minute, that minute's times are drawn first and only those
    falling inside the window are kept (so partial minutes keep their expected share).

    Per-request layouts are replayed exactly: the episode rng is not used (unless
    ``mapping="per_request"``), so every seed gives the same workload for the same window.

    Args:
        trace: A loaded :class:`Trace`, a file path or a shipped trace name.
        time_scale: Trace seconds per simulated second, > 0.
        mapping: Function -> model rule.
        mapping_seed: Salt of the ``hash`` rule, seed of the ``sample`` draw (other rules reject
            a non-zero seed).
        min_requests: ``sample`` draws among functions with at least this many requests.
        subminute: Sub-minute rule for count layouts.
        time_col: Passed to :func:`load_trace` when ``trace`` is a path.
        model_col: Passed to :func:`load_trace` when ``trace`` is a path.
        request_zipf_s: Zipf exponent of the ``per_request`` mapping.
        pad_s: Trace seconds of silence after the trace's end that a window may reach (0: a
            window past the end is an error). ``evaluate.py --windows all`` sets it to one
            control step so that its last, rounded-up episode covers the trace's last requests.
    """

    def __init__(
        self,
        trace: Trace | str | os.PathLike[str],
        *,
        time_scale: float = 1.0,
        mapping: str = "popularity",
        mapping_seed: int = 0,
        subminute: str = "uniform",
        time_col: str | None = None,
        model_col: str | None = None,
        request_zipf_s: float = 1.0,
        min_requests: int = 1,
        pad_s: float = 0.0,
    ) -> None:
        if isinstance(trace, Trace):
            if time_col is not None or model_col is not None:
                raise ValueError("TraceWorkload: time_col/model_col apply only when loading a path")
            self.trace = trace
        else:
            self.trace = load_trace(trace, time_col=time_col, model_col=model_col)
        if not (
            isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0
        ):
            raise ValueError(
                f"TraceWorkload.time_scale must be a finite number > 0, got {time_scale!r}"
            )
        if mapping not in MAPPINGS:
            raise ValueError(f"TraceWorkload.mapping must be one of {MAPPINGS}, got {mapping!r}")
        if subminute not in SUBMINUTE:
            raise ValueError(
                f"TraceWorkload.subminute must be one of {SUBMINUTE}, got {subminute!r}"
            )
        if not isinstance(min_requests, int) or isinstance(min_requests, bool) or min_requests < 1:
            raise ValueError(
                f"TraceWorkload.min_requests must be an integer >= 1, got {min_requests!r}"
            )
        if mapping_seed != 0 and mapping not in ("hash", "sample"):
            raise ValueError(
                f"TraceWorkload.mapping_seed only applies to mapping='hash' or 'sample', got mapping_seed="
                f"{mapping_seed!r} with mapping={mapping!r}"
            )
        if not (
            isinstance(pad_s, (int, float)) and not isinstance(pad_s, bool)
            and math.isfinite(pad_s) and pad_s >= 0
        ):  # fmt: skip
            raise ValueError(f"TraceWorkload.pad_s must be a finite number >= 0, got {pad_s!r}")
        self.pad_s = float(pad_s)
        self.time_scale = float(time_scale)
        self.mapping = mapping
        self.mapping_seed = int(mapping_seed)
        self.min_requests = min_requests
        self.subminute = subminute
        self.request_zipf = Popularity(request_zipf_s)
        self._maps: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"TraceWorkload({os.path.basename(self.trace.path)!r}, layout={self.trace.layout!r}, "
            f"time_scale={self.time_scale}, mapping={self.mapping!r}, subminute={self.subminute!r})"
        )

    def model_map(self, n_models: int) -> np.ndarray:
        """Model of each trace function for ``n_models`` (cached; not for ``per_request``)."""
        if n_models not in self._maps:
            self._maps[n_models] = function_to_model(
                self.trace, n_models, self.mapping, self.mapping_seed, self.min_requests
            )
        return self._maps[n_models]

    def window(self, duration_s: float, start_s: float = 0.0) -> tuple[float, float]:
        """The trace-time window ``(t0, t1)`` replayed for a simulated ``duration_s``.

        The second value is clipped to the trace's end when ``pad_s`` lets the window reach past
        it (the rest of the window is silence).

        Raises:
            ValueError: The window starts before 0 or ends after the trace (plus ``pad_s``).
        """
        t0 = float(start_s)
        t1 = t0 + float(duration_s) * self.time_scale
        if t0 < 0 or t1 > (self.trace.duration_s + self.pad_s) * (1 + 1e-12):
            pad = f" plus pad_s={self.pad_s:g} s of silence" if self.pad_s else ""
            raise ValueError(
                f"TraceWorkload: window start_s={start_s} .. start_s + duration_s * time_scale = "
                f"{start_s} + {duration_s} * {self.time_scale} = {t1} s lies outside the trace "
                f"[0, {self.trace.duration_s}] s of {self.trace.path}{pad}"
            )
        return t0, min(t1, self.trace.duration_s)

    def windows(
        self, duration_s: float, held_out_fraction: float
    ) -> tuple[list[float], list[float]]:
        """Train / held-out ``start_s`` values for episodes of simulated length ``duration_s``.

        The trace is tiled with windows of ``duration_s * time_scale`` trace seconds; see
        :func:`split_windows`.
        """
        return split_windows(self.trace.duration_s, duration_s * self.time_scale, held_out_fraction)

    def __call__(
        self, rng: np.random.Generator, n_models: int, duration_s: float, start_s: float = 0.0
    ) -> Workload:
        check_call("TraceWorkload", rng, n_models, duration_s, start_s)
        t0, t1 = self.window(duration_s, start_s)
        if self.trace.is_binned:
            times, funcs, presorted = self._binned(rng, t0, t1)
        else:
            lo, hi = np.searchsorted(self.trace.times_s, [t0, t1], side="left")
            times, funcs, presorted = (
                self.trace.times_s[lo:hi],
                self.trace.function_index[lo:hi],
                True,
            )
        t_sim = below((times - t0) / self.time_scale, duration_s)
        if self.mapping == "per_request":
            models = rng.choice(n_models, size=t_sim.size, p=self.request_zipf.weights(n_models))
        else:
            models = self.model_map(n_models)[funcs]
            if self.mapping == "sample":
                keep = models >= 0
                t_sim, models = t_sim[keep], models[keep]
        arrivals = group_by_model(t_sim, models, n_models, presorted=presorted)
        source = (
            f"trace {os.path.basename(self.trace.path)} [{self.trace.layout}] window "
            f"[{t0:g}, {t1:g}) s x{self.time_scale:g}, mapping={self.mapping}"
        )
        return Workload(arrivals, float(duration_s), source)

    def _binned(
        self, rng: np.random.Generator, t0: float, t1: float
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Trace times and functions of the invocations inside ``[t0, t1)`` of a count trace."""
        counts, bin_s = self.trace.counts, float(self.trace.bin_s)  # type: ignore[arg-type]
        b0 = int(math.floor(t0 / bin_s))
        b1 = min(int(math.ceil(t1 / bin_s)), counts.shape[1])  # type: ignore[union-attr]
        sub = counts[:, b0:b1]  # type: ignore[index]
        fi, mi = np.nonzero(sub)
        k = sub[fi, mi]
        funcs = np.repeat(fi, k)
        minute = np.repeat(mi + b0, k).astype(np.float64)
        if self.subminute == "equidistant":
            first = np.repeat(np.cumsum(k) - k, k)
            offset = (np.arange(funcs.size) - first + 0.5) / np.repeat(k, k)
        else:
            offset = rng.random(funcs.size)
        times = (minute + offset) * bin_s
        if t0 != b0 * bin_s or t1 != b1 * bin_s:
            keep = (times >= t0) & (times < t1)
            times, funcs = times[keep], funcs[keep]
        return times, funcs, False
