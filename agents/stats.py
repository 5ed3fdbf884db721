"""Interval estimates over training seeds and evaluation windows (Agarwal et al., NeurIPS 2021).

The estimators of *Deep Reinforcement Learning at the Edge of the Statistical Precipice*
(the ``rliable`` package), on a scores matrix ``(runs, tasks)``: here runs are training seeds
and tasks are held-out evaluation windows (a heuristic, deterministic, is one run):

* :func:`iqm` -- interquartile mean: the mean of the middle 50% of all scores pooled
  (``scipy.stats.trim_mean(scores, 0.25, axis=None)``, rliable's ``aggregate_iqm``);
* :func:`probability_of_improvement` -- ``P(X > Y)``: per task, the share of (x run, y run)
  pairs with ``x > y``, a tie counting 1/2 (Mann-Whitney U / (n_x n_y)), averaged over tasks;
* :func:`performance_profile` -- the fraction of all (run, task) scores above each threshold tau;
* :func:`interval` -- a statistic's point estimate and percentile bootstrap interval
  (rliable's default method), under one of two resampling schemes:

  ``"stratified"`` (rliable's ``StratifiedBootstrap``): runs are resampled with replacement
      within each task, tasks stay fixed. The interval is over training seeds, conditional on
      the windows. With one run (a heuristic) it has zero width.
  ``"hierarchical"``: tasks are resampled with replacement, then runs within each drawn task.
      The interval is over seeds *and* windows; with one run it is the plain bootstrap over
      windows. Two policies compared by ``P(X > Y)`` draw the *same* tasks (the windows are
      paired) and their runs independently.

Why not the ``rliable`` package: ``pip install rliable`` (1.2.0) succeeds but ``import
rliable.library`` fails here (2026-12-01): it imports ``arch`` (7.2.0), whose
``arch.univariate.base`` calls pandas' ``deprecate_kwarg`` with the pre-3.0 signature and raises
``TypeError: deprecate_kwarg() missing 1 required positional argument: 'new_arg_name'`` under
pandas 3.1.1; it would also bring pandas, arch, statsmodels and seaborn into a project that uses
none of them. Why not ``scipy.stats.bootstrap`` itself: it resamples each sample independently,
which fits the stratified scheme (one sample per task) but cannot express the hierarchical one
(tasks drawn, then runs within the drawn tasks) or the paired draw of tasks for ``P(X > Y)``;
one vectorised numpy resampler serves all three, and ``tests/test_stats.py`` checks its
stratified intervals against ``scipy.stats.bootstrap`` and its IQM against
``scipy.stats.trim_mean``. Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SCHEMES = ("stratified", "hierarchical")
# Bootstrap replications and confidence: rliable's README uses 50,000 reps for its figures;
# 10,000 keeps the Monte Carlo error of a 95% percentile bound about 1% of the interval's width
# at a fraction of a second per interval here. Assumption (no calibration source).
DEFAULT_REPS = 10_000
DEFAULT_CONFIDENCE = 0.95
_PAIRS_PER_CHUNK = 2_000_000  # comparisons per chunk in P(X > Y): ~16 MB of float64
TIE_RTOL = 1e-9  # figures this close are equal: the same episodes summed in another order, or
# one cold-start class reached by another sum of the same times ((t + d) - t is d to ~1e-13)


def exceeds(x, y):
    """``x > y`` by more than float noise (a tie is not above); numbers or arrays alike."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return x - y > TIE_RTOL * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))


def as_scores(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite float matrix ``(runs, tasks)``; a 1-D array is one run.

    Raises:
        ValueError: Empty, more than 2-D, or not finite (naming ``name`` and the problem).
    """
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty (runs, tasks) matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds non-finite values: {a[~np.isfinite(a)][:3].tolist()}")
    return a


def iqm(scores) -> float:
    """Interquartile mean of every score pooled: ``int(0.25 n)`` values cut from each end.

    ``iqm(range(1, 9)) == mean(3..6) == 4.5``.
    """
    return float(_iqm_batch(as_scores(scores)[None])[0])


def _iqm_batch(x: np.ndarray) -> np.ndarray:
    """IQM of each ``x[r]`` (any trailing shape), as ``scipy.stats.trim_mean(.., 0.25)``."""
    flat = np.sort(x.reshape(x.shape[0], -1), axis=1)
    n = flat.shape[1]
    cut = int(0.25 * n)
    return flat[:, cut : n - cut].mean(axis=1)


def _poi_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of each ``(x[r], y[r])``: shapes ``(R, n_x, m)`` and ``(R, n_y, m)``."""
    per = x.shape[1] * y.shape[1] * x.shape[2]
    step = max(1, _PAIRS_PER_CHUNK // per)  # bound the (chunk, n_x, n_y, m) comparison array
    out = np.empty(x.shape[0])
    for i in range(0, x.shape[0], step):
        xs, ys = x[i : i + step, :, None, :], y[i : i + step, None, :, :]
        wins = (xs > ys).astype(float) + 0.5 * (xs == ys)
        out[i : i + step] = wins.mean(axis=(1, 2)).mean(axis=1)  # per task, then over tasks
    return out


def probability_of_improvement(x, y) -> float:
    """``P(X > Y)``, ties 1/2, per task then averaged; ``x``, ``y``: ``(runs, tasks)`` with the
    same tasks (columns) in the same order.

    Raises:
        ValueError: Bad matrices or different numbers of tasks.
    """
    x, y = _paired(x, y)
    return float(_poi_batch(x[None], y[None])[0])


def performance_profile(scores, taus) -> np.ndarray:
    """Fraction of all (run, task) scores strictly above each ``tau`` (shape of ``taus``)."""
    a = as_scores(scores).ravel()
    t = np.asarray(taus, dtype=float)
    return (a[None, :] > t.reshape(-1, 1)).mean(axis=1).reshape(t.shape)


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_scores(x, "x"), as_scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must score the same tasks: {x.shape[1]} vs {y.shape[1]} columns")
    return x, y


def paired_gain(x, y) -> dict:
    """How ``x`` (runs, tasks) fares against ``y`` on the same tasks, task by task: ``x``'s
    mean over its runs minus ``y``'s, per task. Returns ``{"mean", "min", "max"}`` of that
    gain, ``"tasks_better"`` (tasks where it is > 0), ``"tasks"``, and ``"run_means"``: each run
    of ``x`` averaged over the tasks, next to ``"y_mean"`` (``y``'s runs pooled).

    ``paired_gain([[1, 4], [3, 0]], [2, 1]) == {"mean": 0.5, "min": 0.0, "max": 1.0,
    "tasks_better": 1, "tasks": 2, "run_means": [2.5, 1.5], "y_mean": 1.5}``.
    """
    x, y = _paired(x, y)
    g = x.mean(axis=0) - y.mean(axis=0)
    return {"mean": float(g.mean()), "min": float(g.min()), "max": float(g.max()),
            "tasks_better": int((g > 0).sum()), "tasks": int(g.size),
            "run_means": [float(v) for v in x.mean(axis=1)], "y_mean": float(y.mean())}  # fmt: skip


def _check(scheme: str, reps: int, confidence: float) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def resample(
    scores: np.ndarray, reps: int, rng: np.random.Generator, scheme: str, cols=None
) -> np.ndarray:
    """``reps`` bootstrap copies ``(reps, runs, tasks)`` of ``scores`` under ``scheme``.

    ``cols`` ``(reps, tasks)``: the task draw to use (hierarchical; shared by paired policies).
    """
    n, m = scores.shape
    rows = rng.integers(0, n, size=(reps, n, m))
    if scheme == "stratified":
        return scores[rows, np.arange(m)]
    if cols is None:
        cols = rng.integers(0, m, size=(reps, m))
    return scores[rows, cols[:, None, :]]


def _bounds(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(stats, [alpha, 100 - alpha], axis=0)
    return lo, hi


def interval(
    scores,
    statistic: Callable[[np.ndarray], np.ndarray] = _iqm_batch,
    *,
    scheme: str = "stratified",
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Point estimate and percentile bootstrap interval of ``statistic`` (default: the IQM).

    Args:
        scores: ``(runs, tasks)``.
        statistic: Maps a batch ``(R, runs, tasks)`` to ``(R,)``.
        scheme: ``"stratified"`` or ``"hierarchical"`` (module docstring).
        reps: Bootstrap replications.
        confidence: Two-sided level of the interval.
        seed: Seed of the resampling (same seed, same interval).
    """
    _check(scheme, reps, confidence)
    a = as_scores(scores)
    point = float(statistic(a[None])[0])
    boot = statistic(resample(a, reps, np.random.default_rng(seed), scheme))
    lo, hi = _bounds(boot, confidence)
    return point, (float(lo), float(hi))


def iqm_interval(scores, **kw) -> tuple[float, tuple[float, float]]:
    """:func:`iqm` and its bootstrap interval (keywords of :func:`interval`)."""
    return interval(scores, _iqm_batch, **kw)


def probability_of_improvement_interval(
    x, y, *, scheme="stratified", reps=DEFAULT_REPS, confidence=DEFAULT_CONFIDENCE, seed=0
) -> tuple[float, tuple[float, float]]:
    """:func:`probability_of_improvement` and its interval: ``x`` and ``y`` resampled
    independently (rliable's ``StratifiedIndependentBootstrap``); under ``"hierarchical"`` both
    on the same drawn tasks."""
    _check(scheme, reps, confidence)
    x, y = _paired(x, y)
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, x.shape[1], size=(reps, x.shape[1])) if scheme != "stratified" else None
    bx = resample(x, reps, rng, scheme, cols)
    by = resample(y, reps, rng, scheme, cols)
    lo, hi = _bounds(_poi_batch(bx, by), confidence)
    return probability_of_improvement(x, y), (float(lo), float(hi))


def performance_profile_interval(
    scores, taus, *, scheme="stratified", reps=DEFAULT_REPS, confidence=DEFAULT_CONFIDENCE, seed=0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`performance_profile` at ``taus`` (1-D) with pointwise lower and upper bounds."""
    _check(scheme, reps, confidence)
    a = as_scores(scores)
    t = np.asarray(taus, dtype=float).ravel()
    boot = resample(a, reps, np.random.default_rng(seed), scheme).reshape(reps, -1)
    frac = np.empty((reps, t.size))
    for i, tau in enumerate(t):  # one (reps, n) comparison per threshold keeps memory small
        frac[:, i] = (boot > tau).mean(axis=1)
    lo, hi = _bounds(frac, confidence)
    return performance_profile(a, t), lo, hi


def _drawn_percentiles(windows: list[np.ndarray], cols: np.ndarray, q: float) -> np.ndarray:
    """The ``q``-th percentile of ``windows`` pooled (row 0: as they are; row ``r``: the windows
    ``cols[r - 1]`` drawn, repeats counted), by ``envs.sim.metrics.percentiles``: ``(1 + R,)``,
    NaN where the drawn windows hold no latency."""
    from envs.sim.metrics import percentiles

    out = np.empty(1 + cols.shape[0])
    out[0] = percentiles(np.concatenate(windows), (q,))[0]
    for r, c in enumerate(cols.tolist(), start=1):
        out[r] = percentiles(np.concatenate([windows[w] for w in c]), (q,))[0]
    return out


def percentile_excess_intervals(
    agent, references: dict, q: float = 99.0, *, reps=DEFAULT_REPS,
    confidence=DEFAULT_CONFIDENCE, seed=0,
) -> dict:  # fmt: skip
    """How much higher the agent's pooled ``q``-th latency percentile is than each reference's,
    with percentile bootstrap intervals: the statistic the study's "p99 no worse" compares.

    Args:
        agent: Per training seed, per window, the window's latencies (1-D arrays): ``S x W``.
        references: Name -> per window, that policy's latencies (the same ``W`` windows).
        q: The percentile, in ``(0, 100]``; empirical quantiles as the evaluation's
            (``envs.sim.metrics.percentiles``: the inverted CDF).

    Returns ``{name: (point, (lo, hi))}``. The statistic: the mean over seeds of each seed's
    percentile over its windows pooled, minus the reference's over the same windows pooled
    (``evaluate`` pools a policy's windows; the study averages seeds). Each replication draws
    ``W`` windows with replacement, the same draw for the agent and every reference (paired),
    and ``S`` seeds with replacement. An agent that plays as a reference does gets 0 and
    ``(0, 0)`` against it, up to the rounding of the mean over seeds. Replications whose drawn
    windows hold no request are left out.

    Raises:
        ValueError: No seeds or windows, seeds of unequal length, a reference with another
            number of windows, windows with no latency at all, or ``q`` outside ``(0, 100]``.
    """
    _check("hierarchical", reps, confidence)
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q!r}")
    ag = [[np.asarray(w, dtype=float).ravel() for w in s] for s in agent]
    refs = {k: [np.asarray(w, dtype=float).ravel() for w in v] for k, v in references.items()}
    if not ag or not ag[0]:
        raise ValueError("agent must hold at least one seed of at least one window")
    n_w, n_s = len(ag[0]), len(ag)
    for name, windows in (*((f"agent seed {i}", s) for i, s in enumerate(ag)), *refs.items()):
        if len(windows) != n_w:
            raise ValueError(f"{name} must have the agent's {n_w} windows, got {len(windows)}")
        if not sum(w.size for w in windows):
            raise ValueError(f"{name}'s windows hold no latency")
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n_w, size=(reps, n_w))
    picks = np.zeros((1 + reps, n_s))  # how often each seed is drawn (row 0: each once)
    picks[0] = 1
    np.add.at(picks, (np.repeat(np.arange(1, reps + 1), n_s),
                      rng.integers(0, n_s, size=reps * n_s)), 1)  # fmt: skip
    per_seed = np.stack([_drawn_percentiles(s, cols, q) for s in ag], axis=1)
    mine = (per_seed * picks).sum(axis=1) / n_s
    out = {}
    for name, windows in refs.items():
        stat = mine - _drawn_percentiles(windows, cols, q)
        boot = stat[1:][~np.isnan(stat[1:])]
        lo, hi = _bounds(boot, confidence)
        out[name] = (float(stat[0]), (float(lo), float(hi)))
    return out


def percentile_excess_interval(agent, reference, q: float = 99.0, **kw):
    """:func:`percentile_excess_intervals` against one reference (its windows): ``(point, (lo,
    hi))``."""
    return percentile_excess_intervals(agent, {"reference": reference}, q, **kw)["reference"]
